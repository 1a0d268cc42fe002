"""``load_vlm`` reads each weight straight onto the target device in the requested dtype: the model is
never materialised elsewhere and then moved, and the loaded tensors equal the checkpoint's."""
from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from pipeline.model import load_vlm

pytestmark = pytest.mark.slow


def test_weights_load_in_place_in_the_requested_dtype(fixtures_root, monkeypatch):
    path = fixtures_root / "models" / "llava15"

    def no_move(self, *args, **kwargs):
        raise AssertionError("load_vlm moved a materialised model (Module.to)")

    monkeypatch.setattr(torch.nn.Module, "to", no_move)
    vlm = load_vlm(path, device="cpu", dtype="float16")
    monkeypatch.undo()

    params = dict(vlm.model.named_parameters())
    assert {p.dtype for p in params.values()} == {torch.float16}
    assert {p.device for p in params.values()} == {torch.device("cpu")}
    assert not any(p.is_meta for p in vlm.model.parameters())
    assert vlm.dtype == torch.float16 and vlm.preprocessor.dtype == torch.float16

    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        stored = {model_name(key): f.get_tensor(key) for key in f.keys()}
    assert stored.keys() == params.keys()
    for name, tensor in stored.items():
        assert torch.equal(params[name], tensor.to(torch.float16)), name


def model_name(key: str) -> str:
    """The parameter name in ``LlavaForConditionalGeneration`` of a checkpoint key (fixture layout)."""
    for old, new in (("language_model.lm_head.", "lm_head."), ("language_model.model.", "model.language_model.")):
        if key.startswith(old):
            return new + key[len(old):]
    return "model." + key
