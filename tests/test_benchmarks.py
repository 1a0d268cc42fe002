"""Benchmark cards: exact prompts, schema errors, one sample per row, image grouping, GQA join."""
from __future__ import annotations

import hashlib
import json
import math

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.benchmarks import BENCHMARKS, SchemaError, get_benchmark, iter_samples
from pipeline.benchmarks.textvqa import TextVQA
from pipeline.fixtures import datasets as fx

SUFFIX = "\nAnswer the question using a single word or phrase."
MCQ = "\nAnswer with the option's letter from the given choices directly."


@pytest.fixture(scope="module")
def files(fixtures_root):
    paths = {name: fixtures_root / "data" / f"{name}.parquet" for name in fx.NAMES}
    out = {name: {"test": str(paths[name])} for name in BENCHMARKS if name != "gqa"}
    out["gqa"] = {"instructions": str(paths["gqa_instructions"]), "images": str(paths["gqa_images"])}
    out["bad_rows"] = {"test": str(paths["bad_rows"])}
    return out


# -- prompts, on hand-written rows -----------------------------------------------------------

PROMPTS = [
    ("vqav2", {"question": "What color is the bus?"}, "What color is the bus?" + SUFFIX),
    ("gqa", {"question": "Is the cup on the left?"}, "Is the cup on the left?" + SUFFIX),
    ("pope", {"question": "Is there a dog in the image?"}, "Is there a dog in the image?" + SUFFIX),
    ("vizwiz", {"question": "What is this?"},
     "What is this?\nWhen the provided information is insufficient, respond with 'Unanswerable'." + SUFFIX),
    ("textvqa", {"question": "What brand is it?", "ocr_tokens": ["NOKIA", "3310"]},
     "What brand is it?\nReference OCR token: NOKIA, 3310" + SUFFIX),
    ("textvqa", {"question": "What brand is it?", "ocr_tokens": []}, "What brand is it?" + SUFFIX),
    ("mme", {"question": "Is there a train in this image? Please answer yes or no."},
     "Is there a train in this image?" + SUFFIX),
    ("mme", {"question": "Is the word in the logo 'moto'?Please answer yes or no."},
     "Is the word in the logo 'moto'?" + SUFFIX),
    ("sqa_img", {"question": "Which animal's feet are adapted for grabbing prey?", "hint": "",
                 "choices": ["large intestine", "eagle owl", "duck"]},
     "Which animal's feet are adapted for grabbing prey?\nA. large intestine\nB. eagle owl\nC. duck" + MCQ),
    ("sqa_img", {"question": "Which is a compound?", "hint": "Select the best answer.", "choices": ["O2", "H2O"]},
     "Context: Select the best answer.\nWhich is a compound?\nA. O2\nB. H2O" + MCQ),
    ("mmbench", {"question": "What is shown?", "hint": "Look at the road.", "A": "a car", "B": "a bike",
                 "C": "nan", "D": None},
     "Look at the road.\nWhat is shown?\nA. a car\nB. a bike" + MCQ),
    ("mmbench", {"question": "Which one is red?", "hint": "nan", "A": "x", "B": "y", "C": "z", "D": math.nan},
     "Which one is red?\nA. x\nB. y\nC. z" + MCQ),
    ("mmbench_cn", {"question": "图中是什么？", "hint": None, "A": "猫", "B": "狗", "C": None, "D": None},
     "图中是什么？\nA. 猫\nB. 狗\n请直接回答选项字母。"),
    ("mmbench", {"question": "Which?", "hint": None, "A": "x", "B": "None", "C": "z", "D": "w"},
     "Which?\nA. x" + MCQ),  # "None" is absent and the options stop there
    ("mmvet", {"question": "What is the total price?"}, "What is the total price?"),
]


@pytest.mark.parametrize(("name", "row", "expected"), PROMPTS)
def test_prompt_is_exactly_the_protocol_string(name, row, expected):
    assert get_benchmark(name).prompt(row) == expected


def test_textvqa_ocr_line_can_be_turned_off():
    row = {"question": "What brand is it?", "ocr_tokens": ["NOKIA"]}
    assert TextVQA(ocr_tokens=False).prompt(row) == "What brand is it?" + SUFFIX
    assert TextVQA(ocr_tokens=False).with_source(split="train").ocr_tokens is False


def test_source_is_overridable_and_defaults_are_the_design_table():
    assert {name: (c.hf_id, c.config, c.split) for name, c in BENCHMARKS.items()} == {
        "vqav2": ("lmms-lab/VQAv2", None, "validation"),
        "gqa": ("lmms-lab/GQA", "testdev_balanced_instructions", "testdev"),
        "vizwiz": ("lmms-lab/VizWiz-VQA", None, "val"),
        "sqa_img": ("lmms-lab/ScienceQA", "ScienceQA-IMG", "test"),
        "textvqa": ("lmms-lab/textvqa", None, "validation"),
        "pope": ("lmms-lab/POPE", None, "test"),
        "mme": ("lmms-lab/MME", None, "test"),
        "mmbench": ("lmms-lab/MMBench", "en", "dev"),
        "mmbench_cn": ("lmms-lab/MMBench", "cn", "dev"),
        "mmvet": ("lmms-lab/MMVet", None, "test"),
    }
    moved = get_benchmark("mme").with_source(hf_id="lmms-lab-encoder/MME")
    assert (moved.hf_id, moved.split) == ("lmms-lab-encoder/MME", "test")
    assert get_benchmark("mme").hf_id == "lmms-lab/MME"
    assert get_benchmark("gqa").with_source(config="testdev_all_instructions").images_config == "testdev_all_images"


def test_unknown_benchmark_error_lists_the_names():
    with pytest.raises(ValueError, match="unknown benchmark 'vqa3'.*gqa, mmbench, mmbench_cn"):
        get_benchmark("vqa3")


# -- schema validation -----------------------------------------------------------------------

def test_missing_column_names_benchmark_and_column(files):
    features = datasets.load_dataset("parquet", data_files=files["pope"], split="test").features
    del features["image_source"]
    with pytest.raises(SchemaError, match=r"benchmark 'pope': column 'image_source' is missing"):
        get_benchmark("pope").validate(features)


def test_mistyped_column_names_benchmark_column_and_types():
    schema = pa.schema([("question_id", pa.string()), ("question", pa.string()), ("image", pa.binary()),
                        ("image_id", pa.int64()), ("answers", pa.list_(pa.string()))])
    with pytest.raises(SchemaError) as err:
        get_benchmark("vqav2").validate(schema)
    msg = str(err.value)
    assert "benchmark 'vqav2'" in msg
    assert "column 'question_id' has type string, expected int" in msg
    assert "column 'answers' has type list<string>, expected list<struct>" in msg
    assert "column 'image' has type binary, expected image" in msg
    assert set(err.value.problems) == {"question_id", "answers", "image"}


def test_image_struct_without_hf_metadata_counts_as_an_image():
    schema = pa.schema([("id", pa.string()), ("imageId", pa.string()), ("question", pa.string()),
                        ("answer", pa.string()),
                        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))])
    get_benchmark("gqa").validate(schema)


def test_schema_error_comes_before_any_sample(files, tmp_path):
    table = pq.read_table(files["mmbench"]["test"]).drop_columns(["hint"])
    pq.write_table(table, tmp_path / "broken.parquet")
    samples = iter_samples("mmbench", data_files={"test": str(tmp_path / "broken.parquet")})
    with pytest.raises(SchemaError, match="benchmark 'mmbench': column 'hint' is missing"):
        next(samples)


def test_gqa_images_table_is_validated_too(files, tmp_path):
    table = pq.read_table(files["gqa"]["images"]).rename_columns(["image_id", "image"])
    pq.write_table(table, tmp_path / "images.parquet")
    data = {"instructions": files["gqa"]["instructions"], "images": str(tmp_path / "images.parquet")}
    with pytest.raises(SchemaError, match="benchmark 'gqa': column 'id' is missing of the images table"):
        next(iter_samples("gqa", data_files=data))


# -- samples from the fixtures ---------------------------------------------------------------

def source_rows(files, name) -> int:
    return pq.read_metadata(files[name]["instructions" if name == "gqa" else "test"]).num_rows


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_every_fixture_row_yields_one_sample_with_unique_id_and_adjacent_images(files, name):
    samples = list(iter_samples(name, data_files=files[name]))
    assert len(samples) == source_rows(files, name)
    assert len({s["sample_id"] for s in samples}) == len(samples)
    image_ids = [s["image_id"] for s in samples]
    starts = [k for i, k in enumerate(image_ids) if i == 0 or image_ids[i - 1] != k]
    assert len(starts) == len(set(image_ids))  # each image's rows form one run
    for s in samples:
        assert set(s) == {"sample_id", "image", "image_id", "question", "prompt", "targets", "evidence_patches"}
        assert isinstance(s["image"], bytes) and isinstance(s["prompt"], str)
        json.loads(s["targets"])


def test_sample_carries_the_stored_image_bytes_and_dataset_ids(files):
    table = pq.read_table(files["vqav2"]["test"]).to_pylist()
    samples = list(iter_samples("vqav2", data_files=files["vqav2"]))
    for row, s in zip(table, samples):
        assert s["image"] == row["image"]["bytes"]
        assert (s["sample_id"], s["image_id"]) == (str(row["question_id"]), str(row["image_id"]))
        assert json.loads(s["targets"])["answers"] == [a["answer"] for a in row["answers"]]


def test_gqa_samples_get_the_image_of_their_image_id(files):
    images = {r["id"]: r["image"]["bytes"] for r in pq.read_table(files["gqa"]["images"]).to_pylist()}
    questions = {r["id"]: r for r in pq.read_table(files["gqa"]["instructions"]).to_pylist()}
    for s in iter_samples("gqa", data_files=files["gqa"]):
        assert s["image"] == images[questions[s["sample_id"]]["imageId"]] and s["image_id"] in images


def test_interleaved_rows_are_regrouped_in_memory_and_kept_in_order_when_streaming(files, tmp_path):
    table = pq.read_table(files["vqav2"]["test"])
    order = [i for k in range(3) for i in range(k, table.num_rows, 3)]  # one question of each image, thrice
    pq.write_table(table.take(order), tmp_path / "shuffled.parquet")
    data = {"test": str(tmp_path / "shuffled.parquet")}
    grouped = [s["sample_id"] for s in iter_samples("vqav2", data_files=data)]
    streamed = [s["sample_id"] for s in iter_samples("vqav2", data_files=data, streaming=True)]
    expected = [str(q) for q in table.column("question_id").to_pylist()]
    assert grouped == expected
    assert streamed == [expected[i] for i in order]


def test_streaming_gives_the_same_samples(files):
    for name in ("gqa", "mmbench", "sqa_img"):
        assert list(iter_samples(name, data_files=files[name], streaming=True)) == list(
            iter_samples(name, data_files=files[name]))


def test_limit_and_sample_ids_of_benchmarks_without_an_id_column(files):
    samples = list(iter_samples("sqa_img", data_files=files["sqa_img"], limit=5))
    assert [s["sample_id"] for s in samples] == ["0", "1", "2", "3", "4"]
    assert json.loads(samples[0]["targets"])["answer"] in "ABCD"


@pytest.mark.parametrize("name", ["mmbench", "mmbench_cn"])
def test_mmbench_rotations_share_the_image_id_and_keep_their_own_answer(files, name):
    samples = list(iter_samples(name, data_files=files[name]))
    rows = {str(r["index"]): r for r in pq.read_table(files[name]["test"]).to_pylist()}
    for s in samples:
        index = int(s["sample_id"])
        assert s["image_id"] == str(index % 1_000_000)
        assert json.loads(s["targets"])["answer"] == rows[s["sample_id"]]["answer"]
        assert json.loads(s["targets"])["index"] == index


def test_mmbench_index_is_read_as_a_string_or_an_integer(files):
    # the English fixture stores index as a string (as the hub does), the Chinese one as int64
    assert pq.read_schema(files["mmbench"]["test"]).field("index").type == pa.string()
    assert pq.read_schema(files["mmbench_cn"]["test"]).field("index").type == pa.int64()
    en = [s["sample_id"] for s in iter_samples("mmbench", data_files=files["mmbench"])]
    cn = [s["sample_id"] for s in iter_samples("mmbench_cn", data_files=files["mmbench_cn"])]
    assert en == cn and len(en) > 0
    with pytest.raises(ValueError, match="MMBench index '12a' is not an integer"):
        get_benchmark("mmbench").to_sample({"index": "12a", "question": "q", "hint": None, "answer": "A", "A": "x"})


def test_mmvet_without_image_source_names_images_by_their_bytes(files, tmp_path):
    table = pq.read_table(files["mmvet"]["test"])
    with_source = list(iter_samples("mmvet", data_files=files["mmvet"]))
    path = tmp_path / "mmvet.parquet"
    pq.write_table(table.drop_columns(["image_source"]), path)
    without = list(iter_samples("mmvet", data_files={"test": str(path)}))
    assert [s["sample_id"] for s in without] == [s["sample_id"] for s in with_source]
    assert [s["image_id"] for s in with_source] == table.column("image_source").to_pylist()
    assert [s["image_id"] for s in without] == [hashlib.sha256(s["image"]).hexdigest()[:16] for s in without]


def test_revision_is_passed_to_the_hub(monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs.get("split"), kwargs.get("revision")))
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    for bench in ("pope", "gqa"):
        with pytest.raises(ConnectionError):
            next(iter_samples(bench, revision="0123abc"))
    assert calls == [("lmms-lab/POPE", None, "test", "0123abc"),
                     ("lmms-lab/GQA", "testdev_balanced_instructions", "testdev", "0123abc")]


def test_bad_rows_pass_through_as_samples(files):
    samples = list(iter_samples("vqav2", data_files=files["bad_rows"]))
    assert len(samples) == 9
    by_question_id = {s["sample_id"]: s for s in samples}
    cases = {r["question_type"]: str(r["question_id"]) for r in pq.read_table(files["bad_rows"]["test"]).to_pylist()}
    assert by_question_id[cases["missing image"]]["image"] is None
    assert by_question_id[cases["empty question"]]["question"] == ""
    assert by_question_id[cases["empty question"]]["prompt"] == SUFFIX
    assert by_question_id[cases["undecodable image"]]["image"].startswith(b"\x89PNG")


# -- scoring on hand-made prediction frames --------------------------------------------------

def predictions(rows: list[tuple[str | None, str | None, dict]]):
    """A prediction frame (polars) of (prediction, error, targets) rows."""
    import polars as pl

    return pl.DataFrame(
        {"sample_id": [str(i) for i in range(len(rows))], "prediction": [r[0] for r in rows],
         "error": [r[1] for r in rows], "targets": [json.dumps(r[2], ensure_ascii=False) for r in rows]},
        schema={"sample_id": pl.String, "prediction": pl.String, "error": pl.String, "targets": pl.String},
    )


@pytest.mark.parametrize("name", ["vqav2", "vizwiz", "textvqa"])
def test_vqa_accuracy_on_a_hand_computed_frame(name):
    df = predictions([
        ("Red", None, {"answers": ["red"] * 3 + ["blue"] * 7}),  # each "red" annotator sees 2 others: 2/3
        ("blue", None, {"answers": ["red"] * 10}),                 # 0
        ("two", None, {"answers": ["2"] * 10}),                    # number words normalize: 1
        ("2", "image: cannot identify", {"answers": ["2"] * 10}),  # error row: wrong
    ])
    assert get_benchmark(name).score(df) == {"accuracy": pytest.approx((0.9 + 0 + 1 + 0) / 4)}


@pytest.mark.parametrize("name", ["vqav2", "vizwiz"])
def test_server_scored_splits_without_answers_are_not_scored(name):
    df = predictions([("yes", None, {"answers": []}), ("no", None, {"answers": None})])
    assert get_benchmark(name).score(df) == {}
    with pytest.raises(ValueError, match="no ground-truth answer"):
        get_benchmark(name).score(predictions([("yes", None, {"answers": []}), ("no", None, {"answers": ["no"]})]))


def test_mmvet_is_not_scored_without_a_judge_and_averages_judge_grades_with_one():
    from pipeline.benchmarks.mmvet import MMVet

    df = predictions([
        ("It says OPEN", None, {"question": "What is written?", "answer": "OPEN", "capability": "ocr"}),
        ("7", None, {"question": "What is 3 + 4?", "answer": "7", "capability": "ocr,math"}),
        ("a cat", None, {"question": "What animal?", "answer": "dog", "capability": "rec"}),
        ("OPEN", "decode failed", {"question": "What is written?", "answer": "OPEN", "capability": "ocr"}),
    ])
    assert get_benchmark("mmvet").score(df) == {}
    judge = lambda question, answer, prediction: 1.0 if answer.lower() in prediction.lower() else 0.25  # noqa: E731
    scores = MMVet(judge=judge).score(df)
    assert scores["score"] == pytest.approx((1 + 1 + 0.25 + 0) / 4)
    assert scores["capability/ocr"] == pytest.approx((1 + 1 + 0) / 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        MMVet(judge=lambda *_: 2.0).score(df)


def test_pope_metrics_per_category_and_mean_f1():
    df = predictions([
        ("Yes, there is.", None, {"answer": "yes", "category": "adversarial"}),        # TP
        ("No.", None, {"answer": "no", "category": "adversarial"}),                     # TN
        ("yes", None, {"answer": "no", "category": "adversarial"}),                     # FP
        ("Yes", "image: cannot identify", {"answer": "yes", "category": "adversarial"}),  # error: FN
        ("There is not a dog", None, {"answer": "no", "category": "random"}),           # TN
        ("Yes", None, {"answer": "yes", "category": "random"}),                         # TP
    ])
    m = get_benchmark("pope").score(df)
    assert m["adversarial/accuracy"] == pytest.approx(0.5)
    assert m["adversarial/precision"] == pytest.approx(0.5)
    assert m["adversarial/recall"] == pytest.approx(0.5)
    assert m["adversarial/yes_ratio"] == pytest.approx(0.5)
    assert m["random/f1"] == pytest.approx(1.0)
    assert m["mean_f1"] == pytest.approx(0.75)


def test_mme_category_scores_and_group_sums():
    df = predictions([
        ("Yes", None, {"question_id": "existence/1.png", "category": "existence", "answer": "Yes"}),
        ("No.", None, {"question_id": "existence/1.png", "category": "existence", "answer": "No"}),
        ("yes, it is", None, {"question_id": "existence/2.png", "category": "existence", "answer": "Yes"}),
        ("No", "decode failed", {"question_id": "existence/2.png", "category": "existence", "answer": "No"}),
        ("n", None, {"question_id": "code_reasoning/1.png", "category": "code_reasoning", "answer": "Yes"}),
        ("No", None, {"question_id": "code_reasoning/1.png", "category": "code_reasoning", "answer": "No"}),
    ])
    m = get_benchmark("mme").score(df)
    assert m["existence"] == pytest.approx(75 + 50)  # acc 3/4, acc+ 1/2
    assert m["code_reasoning"] == pytest.approx(50 + 0)
    assert (m["perception"], m["cognition"]) == (pytest.approx(125), pytest.approx(50))


def test_scienceqa_accuracy_with_llava_letter_extraction():
    df = predictions([
        ("B", None, {"answer": "B", "options": ["A", "B", "C"]}),
        ("The answer is A.", None, {"answer": "A", "options": ["A", "B"]}),
        ("C", None, {"answer": "A", "options": ["A", "B"]}),  # not offered: wrong
        ("A", "empty question", {"answer": "A", "options": ["A", "B"]}),
    ])
    assert get_benchmark("sqa_img").score(df) == {"accuracy": pytest.approx(0.5)}


def test_mmbench_circular_accuracy_needs_every_rotation_right():
    def row(index, answer, prediction, n_options, error=None):
        options = dict(zip("ABCD", ["x", "y", "z", "w"][:n_options] + [None] * (4 - n_options)))
        return prediction, error, {"index": index, "answer": answer, **options}

    df = predictions([
        row(1, "A", "A", 2), row(1_000_001, "B", "B. y", 2),                              # all right
        row(2, "C", "C", 3), row(1_000_002, "B", "A", 3), row(2_000_002, "A", "A", 3),   # one wrong
        row(3, "A", "A", 2, error="decode failed"),                                      # error row
    ])
    assert get_benchmark("mmbench").score(df) == {"circular_accuracy": pytest.approx(1 / 3)}
    assert get_benchmark("mmbench_cn").score(df) == {"circular_accuracy": pytest.approx(1 / 3)}


def test_gqa_exact_match_strips_the_period_and_case():
    df = predictions([
        ("Yes.", None, {"answer": "yes"}), ("left", None, {"answer": "right"}),
        (" Red ", None, {"answer": "red"}), ("red", "decode failed", {"answer": "red"}),
    ])
    assert get_benchmark("gqa").score(df) == {"accuracy": pytest.approx(0.5)}


ORACLE = {  # the ground truth, read back from the targets a card wrote
    "vqav2": lambda t: max(sorted(set(t["answers"])), key=t["answers"].count),
    "vizwiz": lambda t: max(sorted(set(t["answers"])), key=t["answers"].count),
    "textvqa": lambda t: max(sorted(set(t["answers"])), key=t["answers"].count),
    "gqa": lambda t: t["answer"],
    "pope": lambda t: t["answer"],
    "mme": lambda t: t["answer"],
    "sqa_img": lambda t: t["answer"],
    "mmbench": lambda t: t["answer"],
    "mmbench_cn": lambda t: t["answer"],
}


@pytest.mark.parametrize("name", list(ORACLE))
def test_answering_the_targets_scores_the_maximum_on_every_fixture(files, name):
    import polars as pl

    samples = list(iter_samples(name, data_files=files[name]))
    df = pl.DataFrame({
        "sample_id": [s["sample_id"] for s in samples],
        "prediction": [ORACLE[name](json.loads(s["targets"])) for s in samples],
        "error": pl.Series([None] * len(samples), dtype=pl.String),
        "targets": [s["targets"] for s in samples],
    })
    card = get_benchmark(name)
    metrics = card.score(df)
    best = 100.0 * len(fx.MME_PERCEPTION) * 2 if name == "mme" else 1.0
    assert metrics[card.headline] == pytest.approx(best)


def test_fixture_data_files_point_at_the_built_tables(fixtures_root):
    from pipeline.benchmarks import fixture_data_files

    gqa = fixture_data_files("gqa")
    assert set(gqa) == {"instructions", "images"}
    assert all(str(fixtures_root) in path for path in gqa.values())
    assert len(list(iter_samples("gqa", data_files=gqa, limit=4))) == 4
    assert fixture_data_files("pope") == {"test": str(fixtures_root / "data" / "pope.parquet")}
    with pytest.raises(ValueError, match="unknown benchmark"):
        fixture_data_files("gqa_images")
