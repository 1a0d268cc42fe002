"""Ray Data stages of a run: prepare → load → nouns → vlm → write → score (see pipeline.run)."""
