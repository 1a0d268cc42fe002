"""Attribution statistics on hand-computed cases, words and noun-phrase flags from the nouns stage's
extractors, the mismatched-image control inputs, and the manifest's attribution section."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from pipeline.attribution.run import CONTROL_SUFFIX, prepare_control
from pipeline.attribution.stats import evidence_multiple, image_stats, text_stats, topk_overlap
from pipeline.attribution.words import Word, question_words, word_attribution, zh_upos
from pipeline.manifest import ManifestError, load_manifest
from pipeline.nlp import question_phrases
from pipeline.stages.attribute import ATTRIBUTION_SCHEMA
from pipeline.stages.prepare import image_key, write_shard
from pipeline.stages.shard_images import KEY, read_images


def _word(text, pos, in_np, a):
    return {"text": text, "start": 0, "end": len(text), "pos": pos, "tag": pos, "in_np": in_np, "attribution": a}


def _rows(entries):
    import polars as pl

    base = {"error": None, "image_attribution": None, "evidence_patches": None, "kept": []}
    return pl.DataFrame([{**base, **e} for e in entries], schema_overrides={"error": pl.String})


def test_text_statistics_match_the_hand_computed_values():
    rows = _rows([
        {"words": [_word("what", "PRON", False, 1.0), _word("dog", "NOUN", True, 3.0), _word("?", "PUNCT", False, 5.0)]},
        {"words": [_word("is", "AUX", False, 2.0), _word("the", "DET", False, 1.0), _word("red", "ADJ", True, 1.0),
                   _word("ball", "NOUN", True, 4.0)]},
        {"words": [_word("x", "NOUN", False, 1.0)], "error": "ValueError: bad image"},
    ])
    stats = text_stats(rows, resamples=200)
    assert stats.n == 2
    noun, phrase = stats.classes["noun"], stats.classes["noun phrase"]
    assert noun["share"].value == pytest.approx((3 / 4 + 4 / 8) / 2)
    assert noun["base"].value == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert noun["enrichment"].value == pytest.approx(0.625 / 0.375)
    assert noun["top"].value == 1.0
    assert phrase["share"].value == pytest.approx((3 / 4 + 5 / 8) / 2)
    assert phrase["enrichment"].value == pytest.approx(0.6875 / 0.5)
    # position profile over bins of k * 5 // n: bin0 (0.5, 1) -> .75, bin1 .5, bin2 (1.5, .5) -> 1, bin3 2
    assert noun["position"].value == pytest.approx((1.0 / 1.75 + 2.0 / 4.25) / 2)
    assert stats.pos["ADJ"]["share"].value == pytest.approx((0 + 1 / 8) / 2)
    assert noun["share"].low <= noun["share"].value <= noun["share"].high


def test_image_statistics_match_the_hand_computed_values():
    assert evidence_multiple([1.0, 1.0, 2.0, 0.0], [2]) == pytest.approx(2.0)
    assert topk_overlap([0.1, 0.5, 0.3, 0.9], [1, 2]) == pytest.approx(0.5)
    rows = _rows([
        {"words": [], "image_attribution": [1.0, 1.0, 2.0, 0.0], "evidence_patches": [2],
         "kept": [{"variant": "cls", "method": "cls", "budget": 2, "indices": [2, 3]}]},
        {"words": [], "image_attribution": [4.0, 0.0, 0.0, 0.0], "evidence_patches": [1],
         "kept": [{"variant": "cls", "method": "cls", "budget": 2, "indices": [0, 1]}]},
    ])
    stats = image_stats(rows, resamples=200)
    assert stats.evidence.value == pytest.approx((2.0 + 0.0) / 2)
    assert stats.top_on_evidence.value == pytest.approx(0.5)
    overlap, chance = stats.overlap["cls@2"]
    # row 1: top-2 = {2, 0} vs {2, 3} -> 1/2; row 2: top-2 = {0, 1} (stable ties) vs {0, 1} -> 1
    assert overlap.value == pytest.approx(0.75) and chance == pytest.approx(0.5)


def test_pieces_sum_into_the_word_they_overlap_most():
    words = [Word("what", 0, 4, "PRON", "WP", False), Word("color", 5, 10, "NOUN", "NN", True)]
    assert word_attribution(words, [(0, 4), (4, 10), (10, 11)], [1.0, 2.0, 7.0]) == [1.0, 2.0]
    assert word_attribution(words, [(3, 7)], [5.0]) == [0.0, 5.0]  # 1 char of "what", 2 of "color"


def test_words_carry_pos_and_the_nouns_stage_phrases():
    questions = ["What color is the wooden bench?", "图中是什么颜色？"]
    found = question_phrases(questions)
    spans = [[p._asdict() for p in phrases] for phrases, _ in found]
    words = question_words(questions, [lang for _, lang in found], spans)
    english = {w.text: w for w in words[0]}
    assert [w.text for w in words[0]] == ["What", "color", "is", "the", "wooden", "bench", "?"]
    assert {t for t, w in english.items() if w.in_np} == {"color", "wooden", "bench"}
    assert english["bench"].pos == "NOUN" and english["?"].pos == "PUNCT"
    chinese = {w.text: w for w in words[1]}
    assert chinese["颜色"].in_np and chinese["颜色"].pos == "NOUN"
    assert not chinese["什么"].in_np
    assert zh_upos("nr") == "PROPN" and zh_upos("vn") == "NOUN" and zh_upos("zz") == "ADJ"


def _shard(path, rows):
    """A prepared shard at ``path`` of ``rows`` given with inline image bytes."""
    full = [{"benchmark": "b", "prompt": r["question"], "targets": "{}", KEY: image_key(r["image"]),
             **{k: v for k, v in r.items() if k != "image"}} for r in rows]
    write_shard(path.parent, int(path.stem.removeprefix("shard-")), full, {image_key(r["image"]): r["image"] for r in rows})


def test_control_pairs_each_question_with_the_next_image(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _shard(src / "shard-00000.parquet", [
        {"sample_id": "1", "image_id": "A", "image": b"a", "question": "q1", "evidence_patches": [1]},
        {"sample_id": "2", "image_id": "A", "image": b"a", "question": "q2", "evidence_patches": [1]},
        {"sample_id": "3", "image_id": "B", "image": b"b", "question": "q3", "evidence_patches": [2]}])
    _shard(src / "shard-00001.parquet", [
        {"sample_id": "4", "image_id": "C", "image": b"c", "question": "q4", "evidence_patches": [3]}])
    out = tmp_path / f"benchmark=b{CONTROL_SUFFIX}"
    prepare_control(sorted(src.glob("*.parquet")), out)
    files = sorted(out.glob("shard-*.parquet"))
    rows = [dict(r, image=read_images(f)[r[KEY]]) for f in files for r in pq.read_table(f).to_pylist()]
    assert [(r["sample_id"], r["image_id"], r["image"]) for r in rows] == \
        [("1", "B", b"b"), ("2", "B", b"b"), ("3", "C", b"c"), ("4", "A", b"a")]
    assert [list(read_images(f).values()) for f in files] == [[b"b", b"c"], [b"a"]]  # each used image once
    assert all(r["evidence_patches"] is None and r["benchmark"] == f"b{CONTROL_SUFFIX}" for r in rows)
    assert (out / "_SUCCESS.json").exists()
    lone = tmp_path / "lone"
    lone.mkdir()
    _shard(lone / "shard-00000.parquet", [{"sample_id": "1", "image_id": "A", "image": b"a", "question": "q"}])
    with pytest.raises(ValueError, match="at least two images"):
        prepare_control([lone / "shard-00000.parquet"], tmp_path / "lone-out")


def test_manifest_attribution_section(tmp_path):
    manifest = load_manifest("manifests/attribute_toyworld.yaml")
    spec = manifest.attribution
    assert (spec.beta_image, spec.beta_text, spec.alpha0, spec.steps, spec.lr, spec.n_noise) == (0.1, 0.1, 5.0, 10, 1.0, 10)
    assert spec.spaces == ["shared"] and spec.control
    path = tmp_path / "m.yaml"
    path.write_text(open("manifests/attribute_toyworld.yaml").read().replace("spaces: [shared]", "spaces: [shared, clip]"))
    with pytest.raises(ManifestError, match="attribution.clip.path"):
        load_manifest(path)
    assert "attribute_ms" in ATTRIBUTION_SCHEMA.names
