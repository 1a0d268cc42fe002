"""The benchmark-shaped Parquet fixtures: hub schemas, drawings that match the answers (their byte-identical
rebuild: test_fixture_rebuild.py)."""
from __future__ import annotations

import io
from collections import Counter, defaultdict

import datasets
import pyarrow.parquet as pq
import pytest
from PIL import Image, UnidentifiedImageError

from pipeline.fixtures import datasets as fx

# Column names and types of the hub datasets, transcribed from their dataset cards
# (lmms-lab/VQAv2, GQA, VizWiz-VQA, ScienceQA, textvqa, POPE, MME, MMBench, MMVet).
VQAV2 = {
    "question_type": "string", "multiple_choice_answer": "string",
    "answers": "list<{answer: string, answer_confidence: string, answer_id: int64}>",
    "image_id": "int64", "answer_type": "string", "question_id": "int64", "question": "string", "image": "image",
}
MMBENCH_CN = {
    "index": "int64", "question": "string", "hint": "string", "answer": "string", "A": "string", "B": "string",
    "C": "string", "D": "string", "category": "string", "image": "image", "source": "string",
    "L2-category": "string", "comment": "string", "split": "string",
}
HUB_SCHEMAS = {
    "vqav2": VQAV2,
    "bad_rows": VQAV2,
    "gqa_instructions": {
        "id": "string", "imageId": "string", "question": "string", "answer": "string", "fullAnswer": "string",
        "isBalanced": "bool", "groups": "{global: string, local: string}", "entailed": "string",
        "equivalent": "string", "types": "{structural: string, semantic: string, detailed: string}",
        "annotations": "{answer: string, question: string, fullAnswer: string}",
        "semantic": "list<{operation: string, argument: string, dependencies: list<int64>}>",
        "semanticStr": "string",
    },
    "gqa_images": {"id": "string", "image": "image"},
    "vizwiz": {"question_id": "string", "image": "image", "question": "string", "answers": "list<string>",
               "category": "string"},
    "sqa_img": {
        "image": "image", "question": "string", "choices": "list<string>", "answer": "int8", "hint": "string",
        "task": "string", "grade": "string", "subject": "string", "topic": "string", "category": "string",
        "skill": "string", "lecture": "string", "solution": "string",
    },
    "textvqa": {
        "image_id": "string", "question_id": "int32", "question": "string", "question_tokens": "list<string>",
        "image": "image", "image_width": "int32", "image_height": "int32", "flickr_original_url": "string",
        "flickr_300k_url": "string", "answers": "list<string>", "image_classes": "list<string>",
        "set_name": "string", "ocr_tokens": "list<string>",
    },
    "pope": {"id": "string", "question_id": "string", "question": "string", "answer": "string",
             "image_source": "string", "image": "image", "category": "string"},
    "mme": {"question_id": "string", "image": "image", "question": "string", "answer": "string",
            "category": "string"},
    "mmbench": {**MMBENCH_CN, "index": "string"},  # the English split stores index as a string
    "mmbench_cn": MMBENCH_CN,
    "mmvet": {"question_id": "string", "image": "image", "question": "string", "answer": "string",
              "image_source": "string", "capability": "string"},
}


def describe(feature) -> str:
    if isinstance(feature, datasets.Image):
        return "image"
    if isinstance(feature, datasets.Value):
        return feature.dtype
    if isinstance(feature, datasets.List):
        return f"list<{describe(feature.feature)}>"
    if isinstance(feature, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in feature.items()) + "}"
    raise AssertionError(f"unexpected feature {feature!r}")


@pytest.fixture(scope="module")
def built(fixtures_root):
    return {name: fixtures_root / "data" / f"{name}.parquet" for name in fx.NAMES}


def load(path) -> datasets.Dataset:
    return datasets.load_dataset("parquet", data_files={"test": str(path)}, split="test")


def decode(cell: dict) -> Image.Image:
    return Image.open(io.BytesIO(cell["bytes"]))


def test_every_fixture_loads_through_datasets_with_the_hub_schema(built):
    assert set(built) == set(HUB_SCHEMAS) == set(fx.NAMES)
    for name, path in built.items():
        ds = load(path)
        got = {col: describe(feature) for col, feature in ds.features.items()}
        assert list(got) == list(HUB_SCHEMAS[name]), name
        assert got == HUB_SCHEMAS[name], name
        if name not in ("bad_rows", "gqa_images"):
            assert 20 <= len(ds) <= 60, (name, len(ds))


def rows(built, name) -> list[dict]:
    return pq.read_table(built[name]).to_pylist()


def test_images_come_in_several_sizes_and_aspect_ratios(built):
    sizes = {decode(r["image"]).size for r in rows(built, "vqav2")}
    assert {(336, 336), (672, 336), (336, 672), (500, 375)} <= sizes


def test_vqav2_has_three_adjacent_questions_per_image_and_colour_answers_are_drawn(built):
    table = rows(built, "vqav2")
    runs = [r["image_id"] for r in table]
    assert all(n == 3 for n in Counter(runs).values())
    assert [k for i, k in enumerate(runs) if i == 0 or runs[i - 1] != k] == list(dict.fromkeys(runs))
    for r in table:
        assert r["question_id"] // 1000 == r["image_id"]
        assert len(r["answers"]) == 10 and [a["answer_id"] for a in r["answers"]] == list(range(1, 11))
        answers = [a["answer"] for a in r["answers"]]
        assert r["multiple_choice_answer"] == max(sorted(set(answers)), key=answers.count)
        if r["question_type"] == "what color is the":
            colours = {c for _, c in decode(r["image"]).getcolors(1 << 20)}
            assert fx.COLORS[r["multiple_choice_answer"]] in colours


def test_gqa_instructions_join_the_images_table_by_image_id(built):
    image_ids = [r["id"] for r in rows(built, "gqa_images")]
    questions = rows(built, "gqa_instructions")
    assert len(set(image_ids)) == len(image_ids)
    assert {r["imageId"] for r in questions} == set(image_ids)
    assert len({r["id"] for r in questions}) == len(questions)


def test_mme_questions_come_in_yes_no_pairs_sharing_a_question_id(built):
    pairs = defaultdict(list)
    for r in rows(built, "mme"):
        assert r["question"].endswith(" Please answer yes or no.")
        pairs[r["question_id"]].append(r["answer"])
    assert all(sorted(answers) == ["No", "Yes"] for answers in pairs.values())
    categories = {r["category"] for r in rows(built, "mme")}
    assert categories == set(fx.MME_PERCEPTION + fx.MME_COGNITION)


def test_pope_asks_about_each_image_in_three_categories_with_balanced_answers(built):
    table = rows(built, "pope")
    per_image = defaultdict(set)
    for r in table:
        per_image[r["image_source"]].add(r["category"])
    assert all(c == set(fx.POPE_CATEGORIES) for c in per_image.values())
    assert Counter(r["answer"] for r in table) == {"yes": 15, "no": 15}
    assert len({r["id"] for r in table}) == len(table)


@pytest.mark.parametrize("name", ["mmbench", "mmbench_cn"])
def test_mmbench_rotations_keep_the_answer_text_and_offset_the_index(built, name):
    groups = defaultdict(list)
    for r in rows(built, name):
        groups[int(r["index"]) % 1_000_000].append(r)
    for base, group in groups.items():
        options = [o for o in "ABCD" if group[0][o] is not None]
        assert [int(r["index"]) for r in group] == [base + k * 1_000_000 for k in range(len(options))]
        assert len({r[r["answer"]] for r in group}) == 1  # the right option's text never changes
        assert len({r["image"]["bytes"] for r in group}) == 1
        assert all({r[o] for o in options} == {group[0][o] for o in options} for r in group)


def test_textvqa_ocr_tokens_are_the_rendered_text_or_empty(built):
    table = rows(built, "textvqa")
    assert any(not r["ocr_tokens"] for r in table) and any(r["ocr_tokens"] for r in table)
    for r in table:
        assert decode(r["image"]).size == (r["image_width"], r["image_height"])
        if r["ocr_tokens"]:
            assert Counter(r["answers"]).most_common(1)[0][0].upper() in r["ocr_tokens"]


def test_bad_rows_hold_every_error_case(built):
    cases = {r["question_type"]: r for r in rows(built, "bad_rows")}
    with pytest.raises(UnidentifiedImageError):
        decode(cases["undecodable image"]["image"])
    assert cases["missing image"]["image"] is None
    assert cases["empty question"]["question"] == ""
    assert cases["no noun"]["question"] == "Why?"
    assert decode(cases["1x1 image"]["image"]).size == (1, 1)
    assert decode(cases["rgba image"]["image"]).mode == "RGBA"
    assert decode(cases["grayscale image"]["image"]).mode == "L"
    cmyk = decode(cases["cmyk jpeg"]["image"])
    assert (cmyk.format, cmyk.mode) == ("JPEG", "CMYK")
    assert decode(cases["huge image"]["image"]).size == (6000, 4000)
    assert len({r["question_id"] for r in cases.values()}) == len(cases) == 9
