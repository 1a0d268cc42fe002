"""VQA accuracy (VQAv2, VizWiz, TextVQA) with the EvalAI answer processor, vectorized in polars.

``normalize_series`` reproduces ``EvalAIAnswerProcessor.__call__`` (the processor of the EvalAI VQA
evaluation that LLaVA-1.5's TextVQA evaluator and VQAv2 submission script apply), step by step:

1. lower-case; delete ``,`` and ``?``; ``'s`` → `` 's`` (so "it's" → "it 's"); strip;
2. ``\\n`` and ``\\t`` → space; strip;
3. each of the 21 punctuation marks is deleted if the text contains it followed or preceded by a
   space (or a digit-comma-digit, impossible after step 1), else replaced by a space;
4. period strip ``(?!<=\\d)(\\.)(?!\\d)`` (its ``(?!<=\\d)`` is a look-ahead that never blocks, not a
   look-behind): a period not followed by a digit is deleted — at most 32 per text, because the
   original passes ``re.UNICODE`` (= 32) as ``re.sub``'s *count*;
5. split on whitespace; number words none/zero..ten → digits; articles a/an/the dropped;
   contraction table ("dont" → "don't", …) applied; words joined by one space.

Steps 3-5 are the official ``vqaEval.py``'s own ``processPunctuation`` + ``processDigitArticle``;
``process_series`` runs them alone (with step 3's digit-comma-digit rule: when the text holds a
digit, a comma and a digit, every mark is deleted) for the server-side scorers of ``vqa_eval``.

Each step is a polars expression over the whole column, run as its own stage on the rows it can
change: a single nested expression would read each step's input many times and polars would
recompute it (tens of times slower). ``normalize_expr`` wraps the stages as an expression.

Whitespace means Python's ``str.isspace`` (Unicode White_Space plus U+001C..U+001F).

Accuracy (per sample): both sides normalized, N ≥ 1 ground-truth answers, ``m`` of them equal to the
prediction; for each answer i, ``acc_i = min(1, #(others equal to the prediction) / 3)`` and the
score is the mean of the ``acc_i``. It is computed as the exact rational
``Σ_i min(3, m - [gt_i = pred]) / (3N)`` rounded once, so it does not depend on summation order
(the official loop sums floats and can differ in the last bit). Predictions and answers are always
normalized: this is LLaVA's TextVQA evaluator (``llava/eval/m4c_evaluator.py``,
``TextVQAAccuracyEvaluator``), the TextVQA scorer. VQAv2 and VizWiz are scored as their servers
do, see ``vqa_eval``. A null prediction (error row) scores 0.
"""
from __future__ import annotations

from collections.abc import Callable

import polars as pl

from pipeline.evaluators.frame import as_string, named_like, require_columns

CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
    "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've",
    "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've",
    "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've",
    "youll": "you'll", "youre": "you're", "youve": "you've",
}
NUMBER_MAP = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = ("a", "an", "the")
PUNCTUATIONS = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
PERIOD_STRIP_COUNT = 32  # re.UNICODE, passed as re.sub's count by the original

_WS = r"[\s\x1c-\x1f]"  # Python's str.isspace
_MARK_CLASS = "[" + "".join("\\" + p if p in "[]\\-^" else p for p in PUNCTUATIONS) + "]"
_DIGIT_COMMA_DIGIT = r"\d,\d"


def word_map(contractions: dict[str, str]) -> dict[str, str]:
    """Step 5 as one word → replacement map ("" drops the word): number words, articles, contractions
    (the keys of the three tables are disjoint, so the original's order of lookups is kept)."""
    return {**{w: "" for w in ARTICLES}, **NUMBER_MAP, **contractions}


_WORD_MAP = word_map(CONTRACTIONS)


def _strip_ws(text: pl.Expr) -> pl.Expr:
    return text.str.replace_all(f"^{_WS}+|{_WS}+$", "")


def _tokenize(text: pl.Expr) -> pl.Expr:
    """Steps 1-2."""
    text = text.str.to_lowercase()
    text = text.str.replace_all(",", "", literal=True).str.replace_all("?", "", literal=True)
    text = _strip_ws(text.str.replace_all("'s", " 's", literal=True))
    return _strip_ws(text.str.replace_all("\n", " ", literal=True).str.replace_all("\t", " ", literal=True))


def _punctuation(text: pl.Expr) -> pl.Expr:
    """Step 3 (reads ``text`` once per mark: apply it to a materialized column)."""
    out = text
    digit_comma_digit = text.str.contains(_DIGIT_COMMA_DIGIT)
    for p in PUNCTUATIONS:
        delete = text.str.contains(p + " ", literal=True) | text.str.contains(" " + p, literal=True) | digit_comma_digit
        out = out.str.replace_all(p, pl.when(delete).then(pl.lit("")).otherwise(pl.lit(" ")), literal=True)
    return out


def _period_strip(text: pl.Expr) -> pl.Expr:
    """Step 4 for texts with at most 32 periods: a run of periods before a digit keeps its last one,
    any other run disappears."""
    return text.str.replace_all(r"\.+(\d)", ".${1}").str.replace_all(r"\.+([^\d.]|$)", "${1}")


def _period_strip_capped(text: pl.Expr) -> pl.Expr:
    """Step 4 with the 32-deletion cap: split on '.', rejoin keeping the periods that stay."""
    part = pl.element()
    idx = pl.int_range(pl.len())
    candidate = (idx > 0) & ~part.str.contains(r"^\d")  # the period before this part is not followed by a digit
    deleted = candidate & (candidate.cast(pl.Int64).cum_sum() <= PERIOD_STRIP_COUNT)
    rejoined = pl.when((idx == 0) | deleted).then(part).otherwise(pl.lit(".") + part)
    return text.str.split(".").list.eval(rejoined).list.join("")


def _digit_article(text: pl.Expr, words_to: dict[str, str] = _WORD_MAP) -> pl.Expr:
    """Step 5: whole-word replacement on words padded by their own spaces ("  w1  w2  ")."""
    words = _strip_ws(text.str.to_lowercase().str.replace_all(f"{_WS}+", " "))
    padded = pl.lit(" ") + words.str.replace_all(" ", "  ", literal=True) + pl.lit(" ")
    mapped = padded.str.replace_many(
        [f" {w} " for w in words_to], [f" {r} " for r in words_to.values()], leftmost=True
    )
    return mapped.str.replace_all(" +", " ").str.strip_chars(" ")


def _apply(text: pl.Series, step: Callable[[pl.Expr], pl.Expr], rows: pl.Series | None = None) -> pl.Series:
    """``step`` on the ``rows`` (bool mask; all if None) of ``text``; other rows unchanged."""
    if rows is None:
        return text.to_frame("t").select(step(pl.col("t"))).to_series()
    idx = rows.fill_null(False).arg_true()
    if idx.len() == 0:
        return text
    done = text.gather(idx).to_frame("t").select(step(pl.col("t"))).to_series()
    return text.clone().scatter(idx, done)


def normalize_series(values: pl.Series) -> pl.Series:
    """EvalAI answer processing of a String series (null stays null), one vectorized stage at a time.

    Each stage runs on the rows it can change (e.g. punctuation only where a mark occurs).
    """
    return process_series(_apply(values.cast(pl.String), _tokenize)).rename(values.name)


def process_series(values: pl.Series, contractions: dict[str, str] = CONTRACTIONS) -> pl.Series:
    """Steps 3-5 alone (``vqaEval``'s ``processPunctuation`` then ``processDigitArticle``) of a String
    series, with the given contraction table; null stays null."""
    text = values.cast(pl.String)
    text = _apply(text, _punctuation, text.str.contains(_MARK_CLASS))
    periods = text.str.count_matches(".", literal=True)
    text = _apply(text, _period_strip_capped, periods > PERIOD_STRIP_COUNT)
    text = _apply(text, _period_strip, (periods > 0) & (periods <= PERIOD_STRIP_COUNT))
    words_to = word_map(contractions)
    return _apply(text, lambda t: _digit_article(t, words_to)).rename(values.name)


def normalize_expr(col: str | pl.Expr) -> pl.Expr:
    """EvalAI answer processing of a String column as an expression (``normalize_series`` per batch)."""
    text = pl.col(col) if isinstance(col, str) else col
    return named_like(text.map_batches(normalize_series, return_dtype=pl.String, is_elementwise=True), text)


def normalize_answer(text: str) -> str:
    """EvalAI answer processing of one string."""
    if not isinstance(text, str):
        raise TypeError(f"normalize_answer: expected str, got {type(text).__name__}")
    return normalize_series(pl.Series([text], dtype=pl.String))[0]


def distinct_mapped(step: Callable[[pl.Series], pl.Series], *columns: pl.Series) -> list[pl.Series]:
    """``step`` on the distinct strings of ``columns`` once, every value mapped through the result."""
    distinct = pl.concat([c.drop_nulls() for c in columns]).unique()
    done = step(distinct)
    return [c.replace_strict(distinct, done, default=None, return_dtype=pl.String) for c in columns]


def answer_lists(df: pl.DataFrame, pred_col: str, answers_col: str, who: str) -> tuple[pl.Series, pl.Series]:
    """``(lengths, flat answers)`` of a prediction frame's ``answers_col``, after checking it:
    List(String), at least one answer per row, no nulls (else ``ValueError`` naming the column)."""
    require_columns(df, {pred_col: (pl.String, pl.Null), answers_col: (pl.List,)}, who)
    answers = df[answers_col]
    if answers.dtype.inner not in (pl.String, pl.Null):
        raise ValueError(f"{who}: column {answers_col!r} must be List(String), got {answers.dtype}")
    lengths = answers.list.len()
    bad = (answers.is_null() | (lengths == 0)).sum()
    if bad:
        raise ValueError(f"{who}: column {answers_col!r} has {bad} row(s) with no ground-truth answer")
    flat = answers.explode().cast(pl.String)
    if flat.null_count():
        raise ValueError(f"{who}: column {answers_col!r} has {flat.null_count()} null answer(s)")
    return lengths, flat


def flat_rows(lengths: pl.Series) -> pl.Series:
    """The row of each flat answer (``lengths[r]`` copies of ``r``)."""
    return pl.int_range(len(lengths), eager=True).repeat_by(lengths).explode()


def accuracy_from_matches(equal: pl.Series, lengths: pl.Series) -> pl.Series:
    """Per-row ``Σ_i min(3, m - [gt_i = pred]) / (3N)`` from the flat ``equal`` (Boolean, null = no
    match) of answer i with its row's prediction; Float64 named ``vqa_accuracy``."""
    n = lengths.cast(pl.Int64)
    ends = n.cum_sum()  # answers of row r are flat[ends[r] - n[r] : ends[r]]
    equal = equal.fill_null(False).cast(pl.Int64)
    cum = pl.concat([pl.Series([0], dtype=pl.Int64), equal.cum_sum()])
    matches = cum.gather(ends) - cum.gather(ends - n)
    hits_with = (matches - 1).clip(0, 3)  # answer i equals the prediction: the others hold m - 1
    hits_without = matches.clip(0, 3)
    total = matches * hits_with + (n - matches) * hits_without
    return (total.cast(pl.Float64) / (3 * n).cast(pl.Float64)).rename("vqa_accuracy")


def vqa_accuracy_frame(df: pl.DataFrame, pred_col: str = "prediction", answers_col: str = "answers") -> pl.Series:
    """Per-row VQA accuracy in [0, 1] (Float64, name ``vqa_accuracy``), both sides EvalAI-processed.

    ``df[pred_col]``: String (null = error row, scores 0); ``df[answers_col]``: List(String), at
    least one answer per row, no nulls (else ``ValueError`` naming the column and the row count).
    """
    lengths, flat = answer_lists(df, pred_col, answers_col, "vqa_accuracy")
    pred, flat = distinct_mapped(normalize_series, as_string(df, pred_col), flat)
    return accuracy_from_matches(flat == pred.gather(flat_rows(lengths)), lengths)


def vqa_accuracy(predictions: list[str | None], answers: list[list[str]]) -> list[float]:
    """Per-sample VQA accuracy in [0, 1]; ``predictions[i]`` None scores 0."""
    if len(predictions) != len(answers):
        raise ValueError(f"vqa_accuracy: {len(predictions)} predictions but {len(answers)} answer lists")
    df = pl.DataFrame(
        {"prediction": predictions, "answers": answers},
        schema={"prediction": pl.String, "answers": pl.List(pl.String)},
    )
    return vqa_accuracy_frame(df).to_list()
