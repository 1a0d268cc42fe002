"""Analytic LLaVA FLOPs: hand-computed tiny case, equality with torch's FlopCounterMode on real
transformers models, named shapes equal to their transformers configs, monotonicity, docs in sync."""
from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch

from icctp.flops import MODELS, llava_flops

ROOT = Path(__file__).resolve().parents[1]

# text: 2 layers, hidden 8, MLP 16, 2 heads of 4, 1 KV head (GQA), vocab 10.
# vision: 3 layers of which 2 run (feature layer -2), width 4, MLP 8, 4x4 image, 2x2 patches -> 4 patches + CLS.
TINY = {
    "model_type": "llava",
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "default",
    "text_config": {"num_hidden_layers": 2, "hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 2,
                    "num_key_value_heads": 1, "head_dim": 4, "vocab_size": 10},
    "vision_config": {"num_hidden_layers": 3, "hidden_size": 4, "intermediate_size": 8, "image_size": 4,
                      "patch_size": 2, "num_channels": 3},
}


def test_tiny_config_hand_computed():
    flops = llava_flops(TINY, n_visual=4, n_text=3, n_new=3)
    # vision: patch conv 2*4 patches*(3*2*2)*4 = 384; per layer on 5 tokens: QKVO 2*5*4*16 = 640,
    # scores+values 2*2*5*5*4 = 400, MLP 2*2*5*4*8 = 640 -> 1680; 2 layers -> 3360; total 3744.
    assert flops["vision"] == 3744
    # projector on 4 patches: 2*4*(4*8 + 8*8) = 768.
    assert flops["projector"] == 768
    # prefill, 7 positions, per layer: Q,O 2*7*8*8 each = 896+896, K,V 2*7*8*4 each = 448+448,
    # scores+values 2*2*7*7*8 = 1568, MLP 3*2*7*8*16 = 5376 -> 9632; 2 layers 19264; LM head 2*8*10 = 160.
    assert flops["prefill"] == 19424
    # decode step j=1 (8 keys): 384 + 2*2*8*8 = 256 + 768 -> 1408 per layer, 2816 + head 160 = 2976;
    # step j=2 (9 keys): 384 + 288 + 768 = 1440 per layer, 2880 + 160 = 3040.
    assert flops["decode"] == 2976 + 3040
    assert flops["total"] == 3744 + 768 + 19424 + 6016


def test_generation_length_semantics():
    no_gen = llava_flops(TINY, 4, 3, 0)
    one = llava_flops(TINY, 4, 3, 1)
    assert no_gen["decode"] == one["decode"] == 0
    assert one["prefill"] - no_gen["prefill"] == 2 * 8 * 10  # LM head on the last position
    two = llava_flops(TINY, 4, 3, 2)
    assert two["decode"] == 2976 and two["prefill"] == one["prefill"]


def test_config_object_equals_dict_form():
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    config = LlavaConfig(
        text_config=LlamaConfig(num_hidden_layers=2, hidden_size=8, intermediate_size=16, num_attention_heads=2,
                                num_key_value_heads=1, head_dim=4, vocab_size=10),
        vision_config=CLIPVisionConfig(num_hidden_layers=3, hidden_size=4, intermediate_size=8, image_size=4,
                                       patch_size=2, num_attention_heads=2),
        vision_feature_layer=-2,
    )
    assert llava_flops(config, 4, 3, 3) == llava_flops(TINY, 4, 3, 3)
    assert llava_flops(config.to_dict(), 4, 3, 3) == llava_flops(TINY, 4, 3, 3)


def _tiny_hf_configs():
    from transformers import CLIPVisionConfig, LlamaConfig

    text = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    vision = CLIPVisionConfig(image_size=28, patch_size=14, hidden_size=8, intermediate_size=12,
                              num_hidden_layers=3, num_attention_heads=2, projection_dim=8)
    return text, vision


def _module_flops(counter, name: str) -> int:
    return sum(counter.get_flop_counts().get(name, {}).values())


@pytest.mark.slow
def test_equals_flop_counter_on_llava_forward_and_generate():
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    text, vision = _tiny_hf_configs()
    config = LlavaConfig(text_config=text, vision_config=vision, vision_feature_layer=-1,
                         image_token_index=49, multimodal_projector_bias=False)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration._from_config(config, attn_implementation="eager").eval()
    n_visual, n_text = 4, 5
    ids = torch.tensor([[1, 2] + [49] * n_visual + [3, 4, 5]])
    pixels = torch.randn(1, 3, 28, 28)
    with torch.no_grad(), FlopCounterMode(display=False) as prefill:
        model(input_ids=ids, pixel_values=pixels, logits_to_keep=1)
    expected = llava_flops(config, n_visual, n_text, n_new=1)
    top = "LlavaForConditionalGeneration"
    assert _module_flops(prefill, f"{top}.model.vision_tower") == expected["vision"]
    assert _module_flops(prefill, f"{top}.model.multi_modal_projector") == expected["projector"]
    assert prefill.get_total_flops() == expected["total"]
    with torch.no_grad(), FlopCounterMode(display=False) as generate:
        out = model.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=4, min_new_tokens=4,
                             do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4
    assert generate.get_total_flops() == llava_flops(config, n_visual, n_text, n_new=4)["total"]


@pytest.mark.slow
def test_next_equals_flop_counter_with_five_vision_passes():
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration

    text, vision = _tiny_hf_configs()
    config = LlavaNextConfig(text_config=text, vision_config=vision, vision_feature_layer=-2, image_token_index=49,
                             image_grid_pinpoints=[[28, 56], [56, 28], [56, 56]])
    torch.manual_seed(0)
    model = LlavaNextForConditionalGeneration._from_config(config, attn_implementation="eager").eval()
    n_visual, n_text = 4 + 4 * 4 + 4, 5  # base 2x2 + 2x2 grid of 2x2 (4x4) + one newline per row
    ids = torch.tensor([[1, 2] + [49] * n_visual + [3, 4, 5]])
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids, pixel_values=torch.randn(1, 5, 3, 28, 28), image_sizes=torch.tensor([[56, 56]]),
              logits_to_keep=1)
    expected = llava_flops(config, n_visual, n_text, n_new=1)
    top = "LlavaNextForConditionalGeneration.model"
    unused_last_layer = _module_flops(counter, f"{top}.vision_tower.encoder.layers.2")
    assert unused_last_layer > 0
    assert _module_flops(counter, f"{top}.vision_tower") - unused_last_layer == expected["vision"]
    assert _module_flops(counter, f"{top}.multi_modal_projector") == expected["projector"]
    llm = _module_flops(counter, f"{top}.language_model") + \
        _module_flops(counter, "LlavaNextForConditionalGeneration.lm_head")
    assert llm == expected["prefill"]


def _llava_config(next_: bool, layers: int, hidden: int, mlp: int, heads: int):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaNextConfig

    text = LlamaConfig(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=mlp,
                       num_attention_heads=heads, num_key_value_heads=heads, vocab_size=32000)
    vision = CLIPVisionConfig(num_hidden_layers=24, hidden_size=1024, intermediate_size=4096,
                              num_attention_heads=16, image_size=336, patch_size=14)
    cls = LlavaNextConfig if next_ else LlavaConfig
    return cls(text_config=text, vision_config=vision, vision_feature_layer=-2)


@pytest.mark.parametrize("name,next_,layers,hidden,mlp,heads", [
    ("llava-1.5-7b", False, 32, 4096, 11008, 32),
    ("llava-1.5-13b", False, 40, 5120, 13824, 40),
    ("llava-next-7b", True, 32, 4096, 11008, 32),
])
def test_named_shapes_equal_their_transformers_configs(name, next_, layers, hidden, mlp, heads):
    config = _llava_config(next_, layers, hidden, mlp, heads)
    for n_visual, n_text, n_new in ((576, 64, 1), (32, 70, 16), (2880, 64, 3)):
        assert llava_flops(name, n_visual, n_text, n_new) == llava_flops(config, n_visual, n_text, n_new)


def test_monotone_in_visual_tokens():
    for name in MODELS:
        totals = [llava_flops(name, n, 64, 16)["total"] for n in range(0, 2881, 32)]
        assert all(a < b for a, b in zip(totals, totals[1:]))
        visions = {llava_flops(name, n, 64, 16)["vision"] for n in (0, 32, 576)}
        assert len(visions) == 1


def test_13b_costs_more_than_7b_and_next_encodes_five_images():
    for n_visual in (1, 32, 576):
        small, big = llava_flops("llava-1.5-7b", n_visual, 64, 8), llava_flops("llava-1.5-13b", n_visual, 64, 8)
        assert all(big[k] > small[k] for k in ("projector", "prefill", "decode", "total"))
        assert big["vision"] == small["vision"]
        nxt = llava_flops("llava-next-7b", n_visual, 64, 8)
        assert nxt["vision"] == 5 * small["vision"] and nxt["projector"] == 5 * small["projector"]
        assert nxt["prefill"] == small["prefill"] and nxt["decode"] == small["decode"]
    one_pass = llava_flops("llava-next-7b", 576, 64, 1, vision_passes=1)
    assert one_pass == llava_flops("llava-1.5-7b", 576, 64, 1)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="llava-1.5-7b, llava-1.5-13b, llava-next-7b"):
        llava_flops("llava-7b", 576, 64, 1)
    with pytest.raises(ValueError, match="n_text"):
        llava_flops("llava-1.5-7b", 576, -1, 1)
    with pytest.raises(ValueError, match="n_new"):
        llava_flops("llava-1.5-7b", 576, 64, True)
    with pytest.raises(ValueError, match="empty"):
        llava_flops("llava-1.5-7b", 0, 0, 1)
    with pytest.raises(ValueError, match="vision_passes"):
        llava_flops("llava-1.5-7b", 576, 64, 1, vision_passes=0)
    with pytest.raises(ValueError, match="text_config.hidden_size"):
        llava_flops({**TINY, "text_config": {**TINY["text_config"], "hidden_size": None}}, 4, 3, 1)
    with pytest.raises(ValueError, match="vision_feature_layer"):
        llava_flops({**TINY, "vision_feature_layer": -5}, 4, 3, 1)
    with pytest.raises(TypeError, match="int"):
        llava_flops(7, 4, 3, 1)


def test_docs_table_is_the_script_output():
    render = runpy.run_path(str(ROOT / "scripts" / "flops_table.py"))["render"]
    doc = (ROOT / "docs" / "flops.md").read_text()
    lines = [line for line in render().splitlines() if line.strip()]
    assert len(lines) >= 20
    missing = [line for line in lines if line not in doc]
    assert not missing, "docs/flops.md is stale; rerun scripts/flops_table.py:\n" + "\n".join(missing)


def test_merged_vision_flops_without_merges_is_the_vision_count_and_tome_saves_work():
    from icctp.flops import CLIP_L_336, merged_vision_flops, vision_flops
    from icctp.tome import tome_schedule

    assert merged_vision_flops(CLIP_L_336, [0] * 23) == vision_flops(CLIP_L_336, 1)
    merged = merged_vision_flops(CLIP_L_336, tome_schedule(23, 577, 64), passes=5)
    assert merged < 5 * vision_flops(CLIP_L_336, 1)
    # by hand: one layer of a 5-token tower merging 1: attention on 5, matching 3x2, MLP on 4
    from icctp.flops import VisionShape
    tiny = VisionShape(layers=1, hidden=2, intermediate=3, image_size=4, patch_size=2, channels=1)
    expected = 2 * 4 * 1 * 4 * 2 + (2 * 5 * 2 * 8 + 4 * 25 * 2) + 2 * 3 * 2 * 1 + 4 * 4 * 2 * 3
    assert merged_vision_flops(tiny, [[1]], head_dim=1) == expected


def test_layer_tokens_hand_computed():
    # FastV-like profile on TINY (2 layers): layer 0 sees 4 visual tokens, layer 1 sees 1.
    # layer 0 on 7 positions: 9632 (see above); layer 1 on 4 positions: Q,O 2*4*8*8 = 512 each,
    # K,V 256 each, scores+values 2*2*4*4*8 = 512, MLP 3*2*4*8*16 = 3072 -> 5120; head 160.
    flops = llava_flops(TINY, 4, 3, 1, layer_tokens=[4, 1])
    assert flops["prefill"] == 9632 + 5120 + 160
    assert llava_flops(TINY, 4, 3, 3, layer_tokens=[4, 4]) == llava_flops(TINY, 4, 3, 3)
    with pytest.raises(ValueError, match="2-layer"):
        llava_flops(TINY, 4, 3, 1, layer_tokens=[4])


def test_fastv_reduction_is_smaller_than_pre_llm_pruning_at_the_same_kept_count():
    pre = llava_flops("llava-1.5-7b", 64, 60, 1)["prefill"]
    fastv = llava_flops("llava-1.5-7b", 576, 60, 1, layer_tokens=[576] * 2 + [64] * 30)["prefill"]
    equivalent = llava_flops("llava-1.5-7b", 576, 60, 1, layer_tokens=[576] * 2 + [30] * 30)["prefill"]
    assert pre < equivalent < fastv


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fastv", "dart", "sparsevlm"])
def test_in_llm_pruning_equals_flop_counter(method):
    """The layer-K runner's decoder and LM-head FLOPs (prefill + 3 decode steps) equal ``llava_flops``
    with the per-layer visual counts it recorded."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from icctp.layer_pruners import DARTPruner, FastVPruner, SparseVLMPruner
    from pipeline.model.generation import greedy
    from pipeline.model.layer_prune import LayerPruneRunner

    _, vision = _tiny_hf_configs()
    text = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    config = LlavaConfig(text_config=text, vision_config=vision, image_token_index=49)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration._from_config(config, attn_implementation="eager").eval()
    pruner = {"fastv": FastVPruner(64, 3, K=1), "dart": DARTPruner(64, 3, K=1),
              "sparsevlm": SparseVLMPruner(64, 3, layers=[0, 1], budget_mode="kept")}[method]
    n_image, before, after = 576, 3, 6
    embeds = torch.randn(1, before + n_image + after, 16)
    mask = torch.ones(1, embeds.shape[1], dtype=torch.long)
    positions = torch.arange(embeds.shape[1])[None]
    runner = LayerPruneRunner(model, pruner, [before], [n_image])
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = greedy(model, embeds, mask, positions, 4, eos_id=-1, pad_id=0, runner=runner)
    assert out.tokens.shape == (1, 4)
    counts = counter.get_flop_counts()
    decoder = sum(counts["LlamaDecoderLayer"].values())  # the runner calls the layers one by one
    head = sum(counts["Linear"].values())  # the LM head, called on its own

    tokens = runner.layer_tokens[0].tolist()
    assert tokens[0] == n_image and tokens[-1] < n_image
    expected = llava_flops(config, n_image, before + after, 4, layer_tokens=tokens)
    assert decoder + head == expected["prefill"] + expected["decode"]
