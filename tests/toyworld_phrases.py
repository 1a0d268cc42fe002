"""What spaCy's noun phrases of the toy world's three question forms are."""
from __future__ import annotations

import re


def expected_phrases(question: str) -> list[str]:
    """The noun phrases the nouns stage finds in a toy-world question (colour, pattern or existence)."""
    attribute = re.search(r"(\w+) object", question).group(1)
    if question.startswith("What color"):
        return ["color", f"{attribute} object"]
    if question.startswith("What pattern"):
        return ["pattern", f"{attribute} object"]
    return [f"{attribute} object", "image"]
