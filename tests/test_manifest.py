"""Manifest validation: every shipped manifest loads; bad keys give errors that name them."""
from pathlib import Path

import pytest

from pipeline.manifest import REFERENCE_BUDGET, ManifestError, load_manifest

MANIFESTS = [p for p in sorted(Path(__file__).parents[1].joinpath("manifests").glob("*.yaml")) if p.stem != "tolerances"]
TEN = {"vqav2", "gqa", "vizwiz", "sqa_img", "textvqa", "pope", "mme", "mmbench", "mmbench_cn", "mmvet"}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_shipped_manifests_validate(path):
    m = load_manifest(path)
    assert m.variants(), path
    from pipeline.benchmarks import BENCHMARKS

    assert {src.benchmark or name for name, src in m.benchmarks.items()} <= set(BENCHMARKS)


def test_paper_and_smoke_manifests_cover_the_ten_benchmarks():
    for name in ("smoke", "llava15_7b_paper", "llava15_13b_paper", "llava_next_7b_paper"):
        assert set(load_manifest(f"manifests/{name}.yaml").benchmarks) == TEN, name


def test_full_runs_once_and_reference_budget_is_unpruned():
    m = load_manifest("manifests/smoke.yaml")
    pairs = [(v.label, v.budget) for v in m.variants()]
    assert pairs == [("full", REFERENCE_BUDGET)] + [(m, 64) for m in ("icctp", "cls", "fastervlm", "visionzip", "tome",
                                                                      "prumerge_plus", "prumerge", "random", "fastv",
                                                                      "dart", "sparsevlm")]


def test_ablation_variants_have_distinct_labels():
    m = load_manifest("manifests/ablations.yaml")
    labels = [spec.name for spec in m.methods]
    assert len(labels) == len(set(labels))
    assert {"icctp-rho_g0.4", "icctp-rho_g0.6", "icctp-rho_g0.8", "icctp-alpha0.2", "icctp-alpha0.4"} <= set(labels)


def _write(tmp_path, text):
    p = tmp_path / "m.yaml"
    p.write_text(text)
    return p


BASE = "name: t\nmodel: {path: fixture:llava15}\nbenchmarks: {vqav2: {data_files: 'fixture:vqav2'}}\n" \
       "methods: [{method: full}]\nbudgets: [64]\n"


@pytest.mark.parametrize(
    "extra, needle",
    [
        ("compute: {batch_sise: 4}\n", "compute.batch_sise"),
        ("generation: {max_new_tokens: 0}\n", "generation.max_new_tokens"),
        ("colour: red\n", "colour"),
    ],
)
def test_bad_key_is_named(tmp_path, extra, needle):
    with pytest.raises(ManifestError, match=needle.replace(".", r"\.")):
        load_manifest(_write(tmp_path, BASE + extra))


def test_bad_budget_and_duplicate_labels(tmp_path):
    with pytest.raises(ManifestError, match="budgets"):
        load_manifest(_write(tmp_path, BASE.replace("[64]", "[0]")))
    dup = BASE.replace("[{method: full}]", "[{method: icctp}, {method: icctp}]")
    with pytest.raises(ManifestError, match="unique"):
        load_manifest(_write(tmp_path, dup))


def test_method_budgets_replace_the_manifest_budgets_until_the_command_line_sets_them():
    m = load_manifest("manifests/llava15_7b_paper.yaml")
    assert [v.budget for v in m.variants() if v.label == "fastv"] == [192, 128, 64]
    assert [v.budget for v in m.variants() if v.label == "icctp"] == [128, 64, 32]
    assert [v.params for v in m.variants() if v.method in ("fastv", "sparsevlm")][0] == {"budget_mode": "equivalent"}
    assert [v.budget for v in m.restrict(budgets=[32]).variants() if v.label == "fastv"] == [32]


def test_restrict_from_command_line():
    m = load_manifest("manifests/smoke.yaml").restrict(budgets=[32], methods=["icctp"], benchmarks=["pope"],
                                                      compute={"batch_size": 4, "num_gpus": None})
    assert [(v.label, v.budget) for v in m.variants()] == [("icctp", 32)]
    assert list(m.benchmarks) == ["pope"] and m.compute.batch_size == 4
    with pytest.raises(ManifestError, match="nope"):
        load_manifest("manifests/smoke.yaml").restrict(benchmarks=["nope"])


@pytest.mark.parametrize(
    "methods, needle",
    [
        ("[{method: icctpp}]", r"methods\.0: unknown method 'icctpp'; allowed: full, random, cls"),
        ("[{method: icctp, params: {alhpa: 0.3}}]", r"methods\.0: method 'icctp' has no option 'alhpa'; its options: rho_g, alpha"),
        ("[{method: icctp, params: {alpha: 1.3}}]", r"icctp\.alpha = 1\.3 is out of range; allowed: a float in \[0, 1\]"),
        ("[{method: icctp, params: {rho_g: 1.0}}]", r"icctp\.rho_g = 1\.0 is out of range; allowed: a float in \(0, 1\)"),
        ("[{method: icctp, params: {allocation: greedy}}]", r"allowed: one of 'exact', 'paper'"),
        ("[{method: fastv, params: {K: 1.5}}]", r"fastv\.K = 1\.5 is out of range; allowed: an int in \[1, inf\)"),
        ("[{method: full, params: {alpha: 0.3}}]", r"method 'full' has no option 'alpha'; its options: none"),
        ("[{method: icctp, label: cls}]", r"label 'cls' names another method"),
        ("[{method: dart_pre, params: {n_pivots: 65}}]", r"n_pivots = 65 exceeds the smallest budget 64"),
        ("[{method: fastv, params: {budget_mode: average}}]", r"allowed: one of 'kept', 'equivalent'"),
        ("[{method: sparsevlm, params: {layers: [6, 2]}}]", r"allowed: a non-empty, strictly increasing list"),
        ("[{method: sparsevlm, budgets: [0]}]", r"budgets must be a non-empty list"),
    ],
)
def test_bad_method_or_option_is_refused_at_load(tmp_path, methods, needle):
    with pytest.raises(ManifestError, match=needle):
        load_manifest(_write(tmp_path, BASE.replace("[{method: full}]", methods)))


@pytest.mark.parametrize(
    "old, new, needle",
    [
        ("vqav2: {data_files", "vqa2: {data_files", r"benchmarks\.vqa2: unknown benchmark 'vqa2'; allowed: gqa, mmbench, mmbench_cn"),
        ("fixture:vqav2", "fixture:vqa2", r"data_files 'fixture:vqa2': unknown fixture dataset"),
        ("fixture:llava15", "fixture:llava16", r"model\.path 'fixture:llava16': unknown fixture model"),
    ],
)
def test_unknown_benchmark_or_fixture_is_refused_at_load(tmp_path, old, new, needle):
    with pytest.raises(ManifestError, match=needle):
        load_manifest(_write(tmp_path, BASE.replace(old, new)))


def test_every_method_option_is_a_real_keyword_of_its_function():
    import inspect

    from pipeline.methods import METHODS

    inputs = {"self", "model", "spans", "tokens", "cls_attn", "centers", "center_mask", "budget", "seeds",
              "return_clusters", "states", "images", "n_layers"}
    for name, method in METHODS.items():
        signature = inspect.signature(method.function())
        options = {p: signature.parameters[p].default for p in signature.parameters if p not in inputs}
        assert set(options) == set(method.params), name
        for option, default in options.items():
            if default is not inspect.Parameter.empty:
                assert method.params[option].accepts(default), (name, option, default)


def test_budget_zero_on_the_command_line_exits_2_before_any_work(tmp_path, capsys):
    import ray

    from jobs.eval_all import main

    out = tmp_path / "run"
    assert main(["--budget", "0", "--output", str(out)]) == 2
    assert "budgets must be a non-empty list of integers >= 1, got [0]" in capsys.readouterr().err
    assert not out.exists() and not ray.is_initialized()


def test_unloadable_judge_is_refused_at_load(tmp_path):
    text = BASE.replace("vqav2: {data_files: 'fixture:vqav2'}", "mmvet: {data_files: 'fixture:mmvet', judge: 'no_such_module:grade'}")
    with pytest.raises(ManifestError, match=r"benchmarks\.mmvet\.judge: cannot load 'no_such_module:grade'"):
        load_manifest(_write(tmp_path, text))
    text = BASE.replace("{data_files: 'fixture:vqav2'}", "{data_files: 'fixture:vqav2', judge: 'json:loads'}")
    with pytest.raises(ManifestError, match=r"benchmarks\.vqav2\.judge: benchmark 'vqav2' is not graded by a judge"):
        load_manifest(_write(tmp_path, text))


def test_paper_manifests_use_llava15_generation_limits_per_benchmark():
    for name in ("llava15_7b_paper", "llava15_13b_paper", "llava_next_7b_paper"):
        limits = load_manifest(f"manifests/{name}.yaml").max_new_tokens()
        long = {"sqa_img", "mmbench", "mmbench_cn", "mmvet"}
        assert limits == {b: 1024 if b in long else 128 for b in limits}
        assert len(limits) == 10


def test_benchmark_revision_and_limit_are_validated(tmp_path):
    m = load_manifest(_write(tmp_path, BASE.replace("benchmarks:", "generation: {max_new_tokens: 7}\nbenchmarks:")))
    assert set(m.max_new_tokens().values()) == {7}
    text = "name: x\nmodel: {path: m}\nmethods: [{method: full}]\nbudgets: [64]\n"
    m = load_manifest(_write(tmp_path, text + "benchmarks: {pope: {revision: abc123, max_new_tokens: 3}}"))
    assert m.benchmarks["pope"].revision == "abc123" and m.max_new_tokens() == {"pope": 3}
    with pytest.raises(ManifestError, match="max_new_tokens"):
        load_manifest(_write(tmp_path, text + "benchmarks: {pope: {max_new_tokens: 0}}"))
