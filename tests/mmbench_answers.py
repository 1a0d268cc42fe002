"""Realistic MMBench predictions for randomized comparisons: letters in the usual wrappings, option
texts, explanations, refusals, Chinese answers, two letters."""
from __future__ import annotations

import random

TEXTS_EN = ["green", "red", "a cat", "two", "The dog", "left", "Apple", "none of them", "B", "yes"]
TEXTS_CN = ["猫", "一只猫", "狗", "红色", "左边", "两个", "是", "不是"]


def options(rng: random.Random) -> dict[str, object]:
    """Option columns A-D: 2-4 texts, then absent values (sometimes a gap before a present one)."""
    n = rng.randint(2, 4)
    pool = TEXTS_CN if rng.random() < 0.3 else TEXTS_EN
    texts = rng.sample(pool, n)
    out: dict[str, object] = {}
    for i, letter in enumerate("ABCD"):
        out[letter] = texts[i] if i < n else rng.choice([None, "nan", "", "None", " NaN ", float("nan")])
    if n < 4 and rng.random() < 0.1:
        out["D"] = rng.choice(pool)  # after a gap: not offered
    return out


def prediction(rng: random.Random, opts: dict[str, object]) -> str | None:
    letter = rng.choice("ABCDEZ")
    other = rng.choice("ABCD")
    text = str(rng.choice([v for v in opts.values() if isinstance(v, str) and v] or ["x"]))
    return rng.choice([
        None, letter, f"{letter}.", f"({letter})", f"[{letter}]", f"**{letter}**", f"Answer: {letter}",
        f"The answer is {letter}.", f"the answer is {letter.lower()}", f"The correct answer is **{letter}**",
        f"{letter}. {text}", text, text.upper(), f"{letter}、{text}", f"选项{letter}：", f"{letter}、",
        f"{letter} or {other}", f"I think it is {letter} because the picture shows {text} on the left side here",
        f"{letter} is the answer because", "Cannot determine the answer", "Failed to obtain answer via API",
        f"Failed to obtain answer via API {text}", "Z", "", " ", f"{text} and {other}", letter.lower(),
        f"The answer is {text}", f"{letter}\n", f"{letter}: {text}",
    ])
