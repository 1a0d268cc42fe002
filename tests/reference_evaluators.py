"""Plain per-row Python implementations of the evaluation rules, written after the original scripts.

They are the references the polars evaluators are tested against (and timed against in
``scripts/bench_eval.py``). Each function handles one row or loops over rows in Python.
"""
from __future__ import annotations

import re

from pipeline.evaluators.vqa import ARTICLES, CONTRACTIONS, NUMBER_MAP, PUNCTUATIONS
from pipeline.evaluators.vqa_eval import VIZWIZ_CONTRACTIONS

PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
MME_PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


# ---- VQA (EvalAIAnswerProcessor) ------------------------------------------------------------
def word_tokenize(word: str) -> str:
    word = word.lower()
    word = word.replace(",", "").replace("?", "").replace("'s", " 's")
    return word.strip()


def process_punctuation(in_text: str) -> str:
    out_text = in_text
    for p in PUNCTUATIONS:
        if (p + " " in in_text or " " + p in in_text) or (re.search(COMMA_STRIP, in_text) is not None):
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    return PERIOD_STRIP.sub("", out_text, re.UNICODE)  # re.UNICODE lands in `count` (= 32), as in the original


def process_digit_article(in_text: str, contractions: dict[str, str] = CONTRACTIONS) -> str:
    out_text = []
    for word in in_text.lower().split():
        word = NUMBER_MAP.get(word, word)
        if word not in ARTICLES:
            out_text.append(word)
    return " ".join(contractions.get(word, word) for word in out_text)


def normalize_answer(item: str) -> str:
    item = word_tokenize(item)
    item = item.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(item))


def vqa_accuracy_official(prediction: str | None, answers: list[str]) -> float:
    """The official loop, float sum of ``min(1, matches / 3)`` over the leave-one-out subsets."""
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    gts = [normalize_answer(a) for a in answers]
    accs = []
    for i in range(len(gts)):
        others = gts[:i] + gts[i + 1:]
        accs.append(min(1, float(sum(1 for g in others if g == pred)) / 3))
    return sum(accs) / len(accs)


def vqa_accuracy(prediction: str | None, answers: list[str]) -> float:
    """Same rule, summing integer ``min(3, matches)`` and dividing once by ``3 N``."""
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    gts = [normalize_answer(a) for a in answers]
    total = 0
    for i in range(len(gts)):
        matches = sum(1 for j, g in enumerate(gts) if j != i and g == pred)
        total += min(3, matches)
    return total / (3 * len(gts))


def leave_one_out(pred: str, gts: list[str]) -> float:
    """Mean over i of ``min(1, #(j != i with gts[j] == pred) / 3)``, as an exact rational."""
    total = 0
    for i in range(len(gts)):
        total += min(3, sum(1 for j, g in enumerate(gts) if j != i and g == pred))
    return total / (3 * len(gts))


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def vqav2_accuracy(prediction: str | None, answers: list[str]) -> float:
    """vqaEval.py on the EvalAI-processed upload: processing only when the answers differ."""
    if prediction is None:
        return 0.0
    res = _clean(normalize_answer(prediction))
    gts = [_clean(a) for a in answers]
    if len(set(gts)) > 1:
        gts = [process_digit_article(process_punctuation(g)) for g in gts]
        res = process_digit_article(process_punctuation(res))
    return leave_one_out(res, gts)


def vizwiz_accuracy(prediction: str | None, answers: list[str]) -> float:
    """The VizWiz API's vqaEval.py on the EvalAI-processed upload: raw answers, processed prediction."""
    if prediction is None:
        return 0.0
    res = process_digit_article(process_punctuation(_clean(normalize_answer(prediction))), VIZWIZ_CONTRACTIONS)
    return leave_one_out(res, answers)


# ---- exact match (GQA) ----------------------------------------------------------------------
def normalize_exact(text: str) -> str:
    return text.strip().rstrip(".").lower()


def exact_match(prediction: str | None, answer: str) -> float:
    if prediction is None:
        return 0.0
    return float(normalize_exact(prediction) == normalize_exact(answer))


# ---- POPE ----------------------------------------------------------------------------------
def parse_yes_no(text: str) -> str:
    if text.find(".") != -1:
        text = text.split(".")[0]
    text = text.replace(",", "")
    words = text.split(" ")
    if "No" in words or "not" in words or "no" in words:
        return "no"
    return "yes"


def _binary_metrics(preds: list[str | None], labels: list[str]) -> dict[str, float]:
    tp = tn = fp = fn = 0
    for pred, label in zip(preds, labels):
        if pred == "yes" and label == "yes":
            tp += 1
        elif pred == "no" and label == "no":
            tn += 1
        elif pred == "yes" and label == "no":
            fp += 1
        elif label == "yes":  # "no" on a positive, or no answer
            fn += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / len(labels),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": sum(1 for p in preds if p == "yes") / len(labels),
    }


def pope_metrics(rows: list[dict]) -> dict[str, float]:
    """rows: {prediction, answer, category}; a null prediction is no answer."""
    by_category: dict[str, tuple[list, list]] = {}
    all_preds, all_labels = [], []
    for row in rows:
        pred = None if row["prediction"] is None else parse_yes_no(row["prediction"])
        label = row["answer"].strip().lower()
        preds, labels = by_category.setdefault(row["category"], ([], []))
        preds.append(pred)
        labels.append(label)
        all_preds.append(pred)
        all_labels.append(label)
    out = {}
    f1s = []
    for category in sorted(by_category):
        metrics = _binary_metrics(*by_category[category])
        f1s.append(metrics["f1"])
        out.update({f"{category}/{k}": v for k, v in metrics.items()})
    out.update({f"pooled/{k}": v for k, v in _binary_metrics(all_preds, all_labels).items()})
    out["mean_f1"] = sum(f1s) / len(f1s)
    return out


# ---- MME ------------------------------------------------------------------------------------
def parse_mme(pred_ans: str) -> str:
    """calculation.py's parse_pred_ans on the lower-cased answer."""
    pred_ans = pred_ans.lower()
    if pred_ans in ["yes", "no"]:
        return pred_ans
    prefix = pred_ans[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def mme_scores(rows: list[dict]) -> dict[str, float]:
    """rows: {question_id, category, answer, prediction}."""
    per_category: dict[str, dict[str, list[bool]]] = {}
    for row in rows:
        gt = row["answer"].lower()
        correct = row["prediction"] is not None and parse_mme(row["prediction"]) == gt
        per_category.setdefault(row["category"], {}).setdefault(row["question_id"], []).append(correct)
    out = {}
    for category, images in per_category.items():
        answers = [c for image in images.values() for c in image]
        acc = sum(answers) / len(answers)
        acc_plus = sum(all(image) for image in images.values()) / len(images)
        out[category] = 100 * acc + 100 * acc_plus
    for name, group in (("perception", MME_PERCEPTION), ("cognition", MME_COGNITION)):
        present = [c for c in group if c in out]
        if present:
            out[name] = sum(out[c] for c in present)
    return out


# ---- multiple choice ------------------------------------------------------------------------
def extract_choice(text: str | None, options: list[str]) -> str | None:
    if text is None:
        return None
    text = text.strip()
    if text in options:
        return text
    if len(text) >= 3 and text[0] in set("ABCDE") | set(options) and text[1:3] == ". ":
        return text[0] if text[0] in options else None
    found = re.findall(r"The answer is ([A-Z]).", text)
    if len(found) == 1 and found[0] in options:
        return found[0]
    return None


# ---- MMBench (VLMEvalKit can_infer, circular) ----------------------------------------------
MMB_REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
                "I'm sorry, but without the image provided", "Cannot determine the answer")
MMB_ANSWER_IS = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")


def offered(row: dict, letters: str = "ABCDE") -> dict[str, str]:
    """Options up to the first absent one (None, NaN, "", "nan", "none")."""
    out = {}
    for letter in letters:
        value = row.get(letter)
        if value is None or value != value or (isinstance(value, str) and value.strip().lower() in ("", "nan", "none")):
            break
        out[letter] = value
    return out


def mmb_option_letter(answer: str, options: dict[str, str]) -> str | None:
    if "Failed to obtain answer via API" in answer:
        return None
    if any(r in answer for r in MMB_REFUSALS):
        return "Z"
    cleaned = answer
    for c in ".()[],:;!*#{}":
        cleaned = cleaned.replace(c, " ")
    tokens = cleaned.split()
    named = [letter for letter in options if letter in tokens]
    if len(named) == 1:
        if tokens.index(named[0]) > len(tokens) - 5:
            return named[0]
    elif not named and "Z" in tokens:
        return "Z"
    found = MMB_ANSWER_IS.search(answer)
    if found and found.group(1).upper() in options:
        return found.group(1).upper()
    return None


def mmb_text_letter(answer: str, options: dict[str, str]) -> str | None:
    lower = answer.lower()
    if len(lower) > 2 * sum(len(v) for v in options.values()):
        return None
    found = [letter for letter, text in options.items() if text.lower() in lower]
    return found[0] if len(found) == 1 else None


def mmb_can_infer(answer: str | None, options: dict[str, str]) -> str | None:
    if answer is None:
        return None
    return mmb_option_letter(answer, options) or mmb_text_letter(answer, options)


def circular_accuracy(rows: list[dict]) -> float:
    """rows: {index, answer, prediction, A, B, C, D}; questions are the rows with index < 1e6."""
    right: dict[int, bool] = {r["index"]: True for r in rows if r["index"] < 1_000_000}
    for row in rows:
        ok = mmb_can_infer(row["prediction"], offered(row)) == row["answer"]
        right[row["index"] % 1_000_000] = right[row["index"] % 1_000_000] and ok
    return sum(right.values()) / len(right)


def choice_accuracy(rows: list[dict]) -> float:
    """rows: {prediction, answer, options}."""
    return sum(extract_choice(r["prediction"], r["options"]) == r["answer"] for r in rows) / len(rows)
