"""Noun phrases from the real spaCy model, offsets from a real fast tokenizer, centers, padding."""
from __future__ import annotations

import pytest
import torch

from icctp.nouns import Phrase, as_phrases, noun_phrases, pad_centers, phrase_token_ids, question_centers

# Benchmark-style questions (VQAv2, GQA, POPE, MME, TextVQA, ScienceQA) with the phrases expected
# under the rule: noun chunks minus leading DET/PRON/PUNCT, plus NOUN/PROPN outside chunks,
# question order, case-insensitive de-duplication.
EXPECTED = {
    "What color is the wooden bench next to the dog?": ["color", "wooden bench", "dog"],
    "Is there a cat in the image?": ["cat", "image"],
    "Why?": [],
    "Is it sunny?": [],
    "What does it say?": [],
    "Is the sky blue?": ["sky"],
    "How many people are in the picture?": ["How many people", "picture"],
    "What is the man holding?": ["man"],
    "Is there a traffic light in the image?": ["traffic light", "image"],
    "What is written on the sign?": ["sign"],
    "What brand is the laptop?": ["brand", "laptop"],
    "Which animal is on the left side of the photo?": ["animal", "left side", "photo"],
    "Is the woman wearing glasses?": ["woman", "glasses"],
    "Is this a Boeing airplane?": ["Boeing airplane"],
    "What is the name of the store?": ["name", "store"],
    "Which of these states is farthest north?": ["states"],
    "What kind of tree is behind the fence?": ["kind", "tree", "fence"],
    "Is there a red apple on the table?": ["red apple", "table"],
    "Which property do these three objects have in common?": ["property", "three objects"],
    "What is the capital of Texas?": ["capital", "Texas"],
    "Are there any horses in this image?": ["horses", "image"],
    "Is the man on the left wearing a hat?": ["man", "left", "hat"],
    "Is the dog bigger than the other dog?": ["dog", "other dog"],
    "Is the Dog next to the dog?": ["Dog"],
    "Is this photo taken in a place of worship?": ["photo", "place", "worship"],
    "Is this movie directed by Christopher Nolan?": ["movie", "Christopher Nolan"],
    "What is the player's jersey number?": ["player's jersey number"],
    "What does the text on the shirt say?": ["text", "shirt"],
    "Think about the magnetic force between the magnets in each pair. Which of the following "
    "statements is true?": ["magnetic force", "magnets", "pair", "following statements"],
}


@pytest.fixture(scope="module")
def nlp():
    from pipeline.nlp import load_spacy

    return load_spacy()


def _train_tokenizer(kind: str):
    """A tiny BPE fast tokenizer trained on the test questions (Llama-like Metaspace or byte-level)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    alphabet = []
    if kind == "metaspace":
        tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>"], initial_alphabet=alphabet)
    tok.train_from_iterator(list(EXPECTED), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>")


@pytest.fixture(scope="module", params=["metaspace", "bytelevel"])
def tokenizer(request):
    return _train_tokenizer(request.param)


@pytest.mark.parametrize("question", list(EXPECTED))
def test_noun_phrases_match_hand_written(nlp, question):
    phrases = noun_phrases(nlp(question))
    assert [p.text for p in phrases] == EXPECTED[question]
    for p in phrases:
        assert question[p.start:p.end] == p.text


def test_benchmark_question_count(nlp):
    assert len(EXPECTED) >= 20
    assert sum(1 for ps in EXPECTED.values() if not ps) >= 3


def test_phrases_are_in_question_order_and_do_not_overlap(nlp):
    for question in EXPECTED:
        phrases = noun_phrases(nlp(question))
        assert all(a.end <= b.start for a, b in zip(phrases, phrases[1:]))


def test_stored_spans_rebuild_the_phrases(nlp):
    for question in EXPECTED:
        phrases = noun_phrases(nlp(question))
        assert as_phrases([p._asdict() for p in phrases]) == phrases
        assert as_phrases([tuple(p) for p in phrases]) == phrases


def _reference_ids(question, phrase, tokenizer):
    """Token ids whose characters overlap the phrase, found by walking tokens one at a time."""
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for tid, (s, e) in zip(enc["input_ids"], enc["offset_mapping"]):
        chars = set(range(s, e))
        if chars & set(range(phrase.start, phrase.end)):
            out.append(tid)
    return out


def test_phrase_ids_decode_to_text_containing_phrase(nlp, tokenizer):
    checked = 0
    for question in EXPECTED:
        phrases = noun_phrases(nlp(question))
        for phrase, ids in zip(phrases, phrase_token_ids(question, phrases, tokenizer)):
            assert ids == _reference_ids(question, phrase, tokenizer)
            assert phrase.text in tokenizer.decode(ids)
            assert phrase.text not in tokenizer.decode(ids[1:])
            assert phrase.text not in tokenizer.decode(ids[:-1])
            checked += 1
    assert checked >= 40


def test_multi_token_phrase_gets_all_its_tokens(tokenizer):
    question = "What color is the wooden bench next to the dog?"
    bench = Phrase("wooden bench", 18, 30)
    (ids,) = phrase_token_ids(question, [bench], tokenizer)
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    inside = [i for i, (s, e) in zip(enc["input_ids"], enc["offset_mapping"]) if s < 30 and e > 18]
    assert len(ids) >= 2 and ids == inside


def test_centers_equal_manual_means(nlp, tokenizer):
    question = "What color is the wooden bench next to the dog?"
    weight = torch.randn(len(tokenizer), 16, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    phrases = noun_phrases(nlp(question))
    centers, source = question_centers(question, phrases, tokenizer, torch.nn.Parameter(weight))
    assert source == "nouns" and centers.dtype == torch.float32 and centers.shape == (3, 16)
    assert not centers.requires_grad
    for center, phrase in zip(centers, phrases):
        ids = _reference_ids(question, phrase, tokenizer)
        manual = sum(weight[i].float() for i in ids) / len(ids)
        torch.testing.assert_close(center, manual)


@pytest.mark.parametrize("question", ["Why?", "Is it sunny?"])
def test_no_noun_gives_one_instruction_center(nlp, tokenizer, question):
    weight = torch.randn(len(tokenizer), 8, generator=torch.Generator().manual_seed(1))
    centers, source = question_centers(question, noun_phrases(nlp(question)), tokenizer, weight)
    ids = tokenizer(question, add_special_tokens=False)["input_ids"]
    assert source == "instruction" and centers.shape == (1, 8)
    torch.testing.assert_close(centers[0], weight[ids].mean(dim=0))


def test_phrase_without_tokens_falls_back_to_instruction():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "is": 1, "there": 2, "a": 3, "?": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Replace("dog", "")
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    question = "is there a dog ?"
    phrases = [Phrase("dog", 11, 14)]
    assert phrase_token_ids(question, phrases, fast) == [[]]
    weight = torch.arange(5 * 2, dtype=torch.float32).reshape(5, 2)
    centers, source = question_centers(question, phrases, fast, weight)
    assert source == "instruction"
    torch.testing.assert_close(centers, weight[[1, 2, 3, 4]].mean(dim=0, keepdim=True))


def test_centers_bad_input(tokenizer):
    weight = torch.zeros(len(tokenizer), 4)
    with pytest.raises(ValueError, match="empty question"):
        question_centers("  ", [], tokenizer, weight)
    with pytest.raises(ValueError, match="does not match"):
        question_centers("Is there a cat?", [Phrase("dog", 11, 14)], tokenizer, weight)
    with pytest.raises(ValueError, match="outside the embedding"):
        question_centers("Is there a cat?", [], tokenizer, weight[:3])
    with pytest.raises(ValueError, match="vocab, d"):
        question_centers("Is there a cat?", [], tokenizer, weight[0])
    with pytest.raises(ValueError, match="empty question"):
        phrase_token_ids("", [], tokenizer)


def test_pad_centers():
    a, b = torch.randn(3, 4), torch.randn(1, 4)
    centers, mask = pad_centers([a, b])
    assert centers.shape == (2, 3, 4) and mask.tolist() == [[True, True, True], [True, False, False]]
    assert torch.equal(centers[0], a) and torch.equal(centers[1, :1], b)
    assert torch.count_nonzero(centers[1, 1:]) == 0
    with pytest.raises(ValueError, match=r"centers\[1\]"):
        pad_centers([a, torch.randn(2, 5)])
    with pytest.raises(ValueError, match=r"K >= 1"):
        pad_centers([a, torch.randn(0, 4)])
    with pytest.raises(ValueError, match="at least one"):
        pad_centers([])
