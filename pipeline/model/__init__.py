"""HF LLaVA-1.5 / LLaVA-NeXT adapter: preprocess on CPU, then encode → select → assemble → generate.

    vlm = load_vlm(path_or_hub_id, device="cpu", dtype=None)
    outs = vlm.generate(samples, method="icctp", budget=64, max_new_tokens=16, **method_kwargs)

``vlm.generate`` = ``vlm.preprocessor.prepare`` (``inputs``: checks, decode, image processor,
tokenization; no weights) + ``vlm.answer`` (the public steps of ``steps``, each with a typed result).
"""
from pipeline.model.vlm import VLM, load_vlm

__all__ = ["VLM", "load_vlm"]
