"""HF LLaVA-1.5 / LLaVA-NeXT adapter: encode once, prune visual tokens, generate in padded batches.

    vlm = load_vlm(path_or_hub_id, device="cpu", dtype=None)
    outs = vlm.generate(samples, method="icctp", budget=64, max_new_tokens=16, **method_kwargs)
"""
from pipeline.model.vlm import VLM, load_vlm

__all__ = ["VLM", "load_vlm"]
