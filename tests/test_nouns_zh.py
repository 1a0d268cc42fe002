"""Chinese noun phrases (jieba POS tags) with spans into the question, the per-question language
decision, the nouns stage's columns and the manifest's per-benchmark extractor setting."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from icctp.nouns import Phrase, phrase_token_ids, question_centers, question_lang, zh_noun_phrases
from pipeline.manifest import ManifestError, load_manifest
from pipeline.nlp import question_phrases
from pipeline.stages.nouns import NounStage
from pipeline.stages.schema import NOUN_SPANS

# MMBench-CN-style questions with the phrases expected under the rule: maximal runs of adjacent words
# tagged n* / vn / eng, question order, case-insensitive de-duplication.
EXPECTED = {
    "图中的圆形是什么颜色？": ["图", "圆形", "颜色"],
    "图中有几个三角形？": ["图", "三角形"],
    "图中的男人穿着什么颜色的T恤？": ["图", "男人", "颜色", "T恤"],
    "这张照片拍摄于哪个城市？": ["照片", "城市"],
    "图中的建筑物位于北京还是上海？": ["图", "建筑物", "北京", "上海"],
    "图中桌子上的苹果有几个？": ["图", "桌子", "苹果"],
    "根据图片，这个人正在做什么运动？": ["图片", "人", "运动"],
    "该图表显示了哪一年的销售数据？": ["图表", "销售数据"],
    "以下哪个国家的国旗出现在图中？": ["国家", "国旗", "图"],
    "图中的狗和猫哪一个更大？": ["图", "狗", "猫"],
    "图中有几只猫？猫在沙发上吗？": ["图", "猫", "沙发"],
    "图中汽车的品牌是什么？（请选择）": ["图", "汽车", "品牌"],
    "图中显示的是哪种动物：猫、狗还是兔子？": ["图", "动物", "猫", "狗", "兔子"],
    "图片中的 iPhone 手机是什么颜色？": ["图片", "iPhone", "手机", "颜色"],
    "图中的 logo 属于哪家公司？": ["图", "logo", "公司"],
    "在这张图片中，ＡＢＣ标志是什么颜色？": ["图片", "ＡＢＣ标志", "颜色"],
    "为什么？": [],
    "这是真的吗？": [],
}


@pytest.mark.parametrize("question", list(EXPECTED))
def test_chinese_phrases_match_hand_written(question):
    ((phrases, lang),) = question_phrases([question])
    assert lang == "zh"
    assert [p.text for p in phrases] == EXPECTED[question]
    for p in phrases:
        assert question[p.start:p.end] == p.text
    assert all(a.end <= b.start for a, b in zip(phrases, phrases[1:]))


def test_question_set_covers_mixed_no_noun_and_full_width():
    assert len(EXPECTED) >= 12
    assert sum(1 for ps in EXPECTED.values() if not ps) >= 2
    assert sum(1 for q in EXPECTED if any("a" <= c.lower() <= "z" for c in q)) >= 3
    assert sum(1 for q in EXPECTED if any("\uff01" <= c <= "\uff5e" for c in q)) >= 8


@pytest.mark.parametrize("question, lang", [
    ("图中的圆形是什么颜色？", "zh"),
    ("图片中的 iPhone 手机是什么颜色？", "zh"),  # 11 ideographs, 6 Latin letters
    ("What does 你好 mean in English?", "en"),
    ("What color is the circle?", "en"),
    ("ＡＢＣ是什么？", "zh"),  # 3 ideographs of 6 letters: half is enough
    ("１２３？", "en"),
    ("", "en"),
])
def test_language_is_decided_per_question(question, lang):
    assert question_lang(question) == lang


def test_mixed_batch_routes_each_question_to_its_extractor():
    questions = ["What color is the wooden bench?", "图中的圆形是什么颜色？", "   "]
    (en, en_lang), (zh, zh_lang), (blank, blank_lang) = question_phrases(questions)
    assert (en_lang, zh_lang, blank_lang) == ("en", "zh", "en")
    assert en == [Phrase("color", 5, 10), Phrase("wooden bench", 18, 30)]
    assert zh == [Phrase("图", 0, 1), Phrase("圆形", 3, 5), Phrase("颜色", 8, 10)]
    assert blank == []


def test_forced_language_uses_one_extractor_for_all():
    questions = ["图中的圆形是什么颜色？", "What color is the circle?"]
    for lang in ("en", "zh"):
        found = question_phrases(questions, lang)
        assert [g for _, g in found] == [lang, lang]
        for question, (phrases, _) in zip(questions, found):
            assert all(question[p.start:p.end] == p.text for p in phrases)
    assert [p.text for p in question_phrases(questions, "zh")[0][0]] == EXPECTED[questions[0]]
    with pytest.raises(ValueError, match="'fr'"):
        question_phrases(questions, "fr")


def test_adjacent_nouns_merge_and_skipped_characters_are_allowed():
    tagged = [("销售", "vn"), ("数据", "n"), ("的", "uj"), ("图表", "n"), ("。", "x")]
    assert zh_noun_phrases("销售数据的图表。", lambda text: tagged) == [Phrase("销售数据", 0, 4), Phrase("图表", 5, 7)]
    gaps = [("图表", "n"), ("数据", "n")]  # a tagger that drops the space between them
    assert zh_noun_phrases("图表 数据", lambda text: gaps) == [Phrase("图表", 0, 2), Phrase("数据", 3, 5)]
    with pytest.raises(ValueError, match="'猫'"):
        zh_noun_phrases("图中的狗", lambda text: [("图", "n"), ("猫", "n")])


def test_chinese_spans_map_to_tokens_and_centers(fixtures_root):
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(fixtures_root / "models" / "llava15")
    weight = torch.randn(len(tokenizer), 8, generator=torch.Generator().manual_seed(0))
    for question, (phrases, _) in zip(EXPECTED, question_phrases(list(EXPECTED))):
        ids = phrase_token_ids(question, phrases, tokenizer)
        assert all(group and p.text in tokenizer.decode(group) for p, group in zip(phrases, ids))
        centers, source = question_centers(question, phrases, tokenizer, weight)
        assert (source, centers.shape[0]) == (("nouns", len(phrases)) if phrases else ("instruction", 1))


def test_nouns_stage_writes_spans_and_language_per_benchmark_setting():
    batch = pa.table({"benchmark": ["mmbench_cn", "mmbench_cn_en", "vqav2"],
                      "question": ["图中有几个三角形？", "图中有几个三角形？", "Is there a dog?"]})
    out = NounStage({"mmbench_cn_en": "en"})(batch)
    assert out.schema.field("noun_spans").type == NOUN_SPANS
    assert out.column("noun_lang").to_pylist() == ["zh", "en", "en"]
    spans = out.column("noun_spans").to_pylist()
    assert spans[0] == [{"text": "图", "start": 0, "end": 1}, {"text": "三角形", "start": 5, "end": 8}]
    assert spans[2] == [{"text": "dog", "start": 11, "end": 14}]


def test_fixture_mmbench_cn_questions_get_chinese_nouns(fixtures_root):
    questions = pq.read_table(fixtures_root / "data" / "mmbench_cn.parquet").column("question").to_pylist()
    found = question_phrases(questions)
    assert {lang for _, lang in found} == {"zh"}
    shapes = {"圆形", "正方形", "三角形"}
    assert all({p.text for p in phrases} & shapes for phrases, _ in found)


def test_manifest_nouns_setting_is_validated(tmp_path):
    base = ("name: t\nmodel: {path: fixture:llava15}\nmethods: [{method: icctp}]\nbudgets: [64]\n"
            "benchmarks: {mmbench_cn: {data_files: 'fixture:mmbench_cn', nouns: %s}}\n")
    path = tmp_path / "m.yaml"
    path.write_text(base % "en")
    assert load_manifest(path).benchmarks["mmbench_cn"].nouns == "en"
    path.write_text(base % "fr")
    with pytest.raises(ManifestError, match=r"benchmarks\.mmbench_cn\.nouns"):
        load_manifest(path)


def test_ablation_manifest_runs_mmbench_cn_with_both_extractors():
    entries = load_manifest("manifests/ablations.yaml").benchmarks
    settings = {src.nouns for name, src in entries.items() if (src.benchmark or name) == "mmbench_cn"}
    assert settings == {"zh", "en"}
