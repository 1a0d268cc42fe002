"""The spaCy English pipeline loads offline and parses noun chunks."""
from pipeline.nlp import SPACY_MODELS, load_spacy


def test_spacy_english_model_loads_and_parses():
    nlp = load_spacy()
    assert nlp.meta["name"] in {m.removeprefix("en_") for m in SPACY_MODELS}
    assert "parser" in nlp.pipe_names and "ner" not in nlp.pipe_names
    doc = nlp("Is there a red umbrella next to the bench?")
    assert [c.text for c in doc.noun_chunks] == ["a red umbrella", "the bench"]
