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

    assert set(m.benchmarks) <= set(BENCHMARKS)


def test_paper_and_smoke_manifests_cover_the_ten_benchmarks():
    for name in ("smoke", "llava15_7b_paper", "llava15_13b_paper", "llava_next_7b_paper"):
        assert set(load_manifest(f"manifests/{name}.yaml").benchmarks) == TEN, name


def test_full_runs_once_and_reference_budget_is_unpruned():
    m = load_manifest("manifests/smoke.yaml")
    pairs = [(spec.name, b) for spec, b in m.variants()]
    assert pairs == [("full", REFERENCE_BUDGET), ("icctp", 64), ("cls", 64), ("random", 64)]


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


def test_restrict_from_command_line():
    m = load_manifest("manifests/smoke.yaml").restrict(budgets=[32], methods=["icctp"], benchmarks=["pope"],
                                                      compute={"batch_size": 4, "num_gpus": None})
    assert [(s.name, b) for s, b in m.variants()] == [("icctp", 32)]
    assert list(m.benchmarks) == ["pope"] and m.compute.batch_size == 4
    with pytest.raises(ManifestError, match="nope"):
        load_manifest("manifests/smoke.yaml").restrict(benchmarks=["nope"])
