"""Latency and memory of a random-init LLaVA-1.5-7B-shaped model on one GPU, through our adapter.

Builds the model on device ``meta``, moves it to the GPU with ``to_empty`` and initialises it
there (transformers' own init: normal weights, norms to one, rotary and position buffers), in
bf16: no weights, no network, compute cost equal to the real model's. The processor (CLIP 336
image processor, local BPE tokenizer with the LLaVA-1.5 chat template) is the tiny fixture's.
For each method (full, icctp, cls) and budget (576, 128, 64, 32), a batch of 16 distinct images
with VQAv2-style questions goes through the adapter's stages, timed with a device sync at each
boundary (median of ``--repeats`` after one warm-up):

- vision: ``pipeline.model.llava.visual_tokens`` (image processor, tower, CLS attention, projector);
- select: ``icctp.baselines.select`` on the projected tokens (kept = all for full or budget >= n);
- prefill: ``assemble.splice`` + ``assemble.left_pad`` + ``generation.greedy`` up to the first token;
- generate: the same assembly + ``generation.greedy`` for ``--new-tokens`` tokens, EOS ignored
  (``eos_id=-1``, an id the model never emits);
- peak memory: ``torch.cuda.max_memory_allocated`` over the configuration's runs (weights included);
- select share: select / (select + prefill), the part of time-to-first-token after the vision
  tower spent choosing tokens.

``--tiny`` runs the same code on CPU with tiny widths (fp32, batch 2, 4 new tokens) in seconds.

    .venv/bin/python scripts/gpu_check.py            # one NVIDIA GPU, < 5 min
    .venv/bin/python scripts/gpu_check.py --tiny     # CPU smoke run
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.model import VLM, compat, generation, llava  # noqa: E402
from pipeline.model.assemble import left_pad, splice  # noqa: E402

METHODS = ("full", "icctp", "cls")
BUDGETS = (576, 128, 64, 32)
QUESTIONS = (
    "What color is the umbrella?",
    "How many dogs are in the picture?",
    "What is the man holding?",
    "Is there a red square in the image?",
)
VQAV2_SUFFIX = "\nAnswer the question using a single word or phrase."


def llava_config(tiny: bool, tokenizer):
    """LlavaConfig with CLIP ViT-L/14-336 + Vicuna-7B shapes (vocab 32064), or tiny widths (576 patches
    too, vocab = the tokenizer's, so every generated id decodes); special ids from ``tokenizer``."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    if tiny:
        vision = CLIPVisionConfig(image_size=336, patch_size=14, hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=3, num_attention_heads=4, projection_dim=32)
        text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=4)
    else:
        vision = CLIPVisionConfig(image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096,
                                  num_hidden_layers=24, num_attention_heads=16, projection_dim=768,
                                  hidden_act="quick_gelu", layer_norm_eps=1e-5)
        text = dict(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=32)
    text = LlamaConfig(**text, max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False,
                       pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id)
    return LlavaConfig(vision_config=vision, text_config=text,
                       image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                       projector_hidden_act="gelu", vision_feature_layer=-2,
                       vision_feature_select_strategy="default", image_seq_length=576)


def random_llava(config, device: str | torch.device, dtype: torch.dtype):
    """A random-init ``LlavaForConditionalGeneration`` built on ``meta``, then materialised on ``device``.

    transformers' ``initialize_weights`` runs on the device (normal weights, unit norms) and also
    rebuilds the non-persistent buffers (rotary ``inv_freq``, CLIP ``position_ids``) that
    ``to_empty`` leaves uninitialised. Seconds even at 7B on a GPU.
    """
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.to_empty(device=device)
    torch.manual_seed(0)
    model.initialize_weights()
    return model.eval()


def fixture_processor():
    """The tiny LLaVA-1.5 fixture's processor (CLIP 336 images, local BPE tokenizer, chat template)."""
    from transformers import AutoProcessor

    from pipeline.fixtures import tiny_model_path

    return AutoProcessor.from_pretrained(tiny_model_path("llava15"))


def build_vlm(tiny: bool, device: str, dtype: torch.dtype) -> VLM:
    """Our adapter around an in-memory random model of the requested shape."""
    processor = fixture_processor()
    return VLM(random_llava(llava_config(tiny, processor.tokenizer), device, dtype), processor)


def make_samples(batch: int) -> list[dict]:
    """``batch`` samples with distinct random 480x640 images and VQAv2-style prompts."""
    from pipeline.nlp import question_phrases

    rng = np.random.default_rng(0)
    spans = [phrases for phrases, _ in question_phrases(list(QUESTIONS))]
    samples = []
    for i in range(batch):
        question, phrases = QUESTIONS[i % len(QUESTIONS)], spans[i % len(QUESTIONS)]
        pixels = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
        samples.append(dict(image=Image.fromarray(pixels), question=question, prompt=question + VQAV2_SUFFIX,
                            noun_spans=phrases))
    return samples


@dataclass
class Prepared:
    """Per-sample inputs that do not depend on method or budget."""

    images: list[Image.Image]
    text_ids: list[list[int]]
    image_pos: list[int]
    centers: torch.Tensor  # (B, K, d) float32
    center_mask: torch.Tensor  # (B, K) bool


def prepare(vlm: VLM, samples: list[dict]) -> Prepared:
    """Render and tokenize each prompt (one ``<image>``) and compute its noun-phrase centers."""
    from icctp.nouns import pad_centers, question_centers

    from pipeline.model.images import decode_image

    text_ids, image_pos, centers = [], [], []
    weight = compat.input_embeddings(vlm.model).weight
    for sample in samples:
        ids = vlm.tokenizer(vlm.render(sample["prompt"])).input_ids
        where = [i for i, t in enumerate(ids) if t == vlm.image_token_id]
        if len(where) != 1:
            raise ValueError(f"rendered prompt must hold exactly one image token, found {len(where)}")
        center, _ = question_centers(sample["question"], sample["noun_spans"], vlm.tokenizer, weight)
        text_ids.append(ids)
        image_pos.append(where[0])
        centers.append(center)
    padded, mask = pad_centers(centers)
    images = [decode_image(s["image"]) for s in samples]
    return Prepared(images, text_ids, image_pos, padded.to(vlm.device), mask.to(vlm.device))


def kept_indices(method: str, budget: int, visuals, prepared: Prepared) -> list[torch.Tensor]:
    """Sorted kept positions per sample (all for ``full`` or a budget >= the visual count)."""
    from icctp.baselines import select

    n = visuals[0].n_visual
    if method == "full" or budget >= n:
        return [torch.arange(v.n_visual, device=v.tokens.device) for v in visuals]
    tokens = torch.stack([v.tokens for v in visuals]).float()  # (B, n, d)
    cls_attn = torch.stack([v.grid_cls[0] for v in visuals]).float()  # (B, n)
    extra = dict(centers=prepared.centers, center_mask=prepared.center_mask) if method == "icctp" else {}
    return list(select(method, tokens, cls_attn, budget, **extra))


def assemble(vlm: VLM, prepared: Prepared, visuals, kept) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeds (B, L, d), mask and positions (B, L): kept visual tokens spliced at ``<image>``, left-padded."""
    embed = compat.input_embeddings(vlm.model)
    sequences = []
    for ids, pos, visual, keep in zip(prepared.text_ids, prepared.image_pos, visuals, kept):
        text = embed(torch.tensor(ids, device=vlm.device))  # (L, d)
        sequences.append(splice(text, pos, visual.tokens[keep]))
    return left_pad(sequences)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn):
    """(result, seconds) of ``fn()`` with the device drained before and after."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


@torch.no_grad()
def run_once(vlm: VLM, prepared: Prepared, method: str, budget: int, new_tokens: int) -> dict:
    """One pass of every stage; seconds per stage for the whole batch."""
    dev = vlm.device
    visuals, vision_s = timed(dev, lambda: llava.visual_tokens(vlm.model, vlm.processor, prepared.images))
    kept, select_s = timed(dev, lambda: kept_indices(method, budget, visuals, prepared))
    inputs, assemble_s = timed(dev, lambda: assemble(vlm, prepared, visuals, kept))
    _, prefill_s = timed(dev, lambda: generation.greedy(vlm.model, *inputs, 1, -1, vlm.pad_id))
    result, generate_s = timed(dev, lambda: generation.greedy(vlm.model, *inputs, new_tokens, -1, vlm.pad_id))
    if result.tokens.shape[1] != new_tokens:
        raise RuntimeError(f"generated {result.tokens.shape[1]} tokens, expected {new_tokens}")
    return dict(vision=vision_s, select=select_s, prefill=assemble_s + prefill_s, generate=assemble_s + generate_s,
                kept=sum(int(k.numel()) for k in kept) / len(kept), tokens=result.tokens)


def measure(vlm: VLM, prepared: Prepared, method: str, budget: int, new_tokens: int, repeats: int) -> dict:
    """Median seconds per stage over ``repeats`` passes after one warm-up, and peak memory (GiB)."""
    cuda = vlm.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(vlm.device)
    run_once(vlm, prepared, method, budget, new_tokens)
    runs = [run_once(vlm, prepared, method, budget, new_tokens) for _ in range(repeats)]
    out = {key: statistics.median(r[key] for r in runs) for key in ("vision", "select", "prefill", "generate")}
    out["kept"] = runs[0]["kept"]
    out["peak_gib"] = torch.cuda.max_memory_allocated(vlm.device) / 2**30 if cuda else None
    return out


def table(rows: list[dict], batch: int, new_tokens: int) -> str:
    """One Markdown table, a row per method x budget; times in ms for the whole batch."""
    lines = [
        f"| method | budget | kept/sample | vision ms | select ms | prefill ms | generate ms ({new_tokens} tok) "
        f"| peak GiB | select share of prefill |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        peak = "n/a (cpu)" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        share = r["select"] / (r["select"] + r["prefill"])
        lines.append(
            f"| {r['method']} | {r['budget']} | {r['kept']:.0f} | {1e3 * r['vision']:.1f} | {1e3 * r['select']:.2f} "
            f"| {1e3 * r['prefill']:.1f} | {1e3 * r['generate']:.1f} | {peak} | {100 * share:.2f}% |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny widths on CPU (smoke test of the same path)")
    parser.add_argument("--batch", type=int, default=None, help="samples per batch (default 16; 2 with --tiny)")
    parser.add_argument("--new-tokens", type=int, default=None, help="generated tokens (default 16; 4 with --tiny)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed passes per configuration after one warm-up (default 3; 1 with --tiny)")
    args = parser.parse_args(argv)
    batch = args.batch or (2 if args.tiny else 16)
    new_tokens = args.new_tokens or (4 if args.tiny else 16)
    repeats = args.repeats or (1 if args.tiny else 3)
    if args.tiny:
        torch.set_num_threads(1)  # tiny tensors: extra threads only add synchronisation on a shared CPU
        device, dtype, card = torch.device("cpu"), torch.float32, "CPU (tiny shapes, 1 thread)"
    else:
        if not torch.cuda.is_available():
            raise SystemExit("gpu_check needs an NVIDIA GPU (torch.cuda.is_available() is False); use --tiny on CPU")
        device, dtype, card = torch.device("cuda"), torch.bfloat16, torch.cuda.get_device_name(0)

    start = time.perf_counter()
    vlm = build_vlm(args.tiny, device, dtype)
    build_s = time.perf_counter() - start
    prepared = prepare(vlm, make_samples(batch))
    rows = []
    for method in METHODS:
        for budget in BUDGETS:
            rows.append(dict(method=method, budget=budget,
                             **measure(vlm, prepared, method, budget, new_tokens, repeats)))
    n_text = statistics.median(len(ids) - 1 for ids in prepared.text_ids)
    print(f"device: {card}; torch {torch.__version__}; dtype {str(dtype).removeprefix('torch.')}; batch {batch}; "
          f"text tokens/sample {n_text:.0f} + visual; model built in {build_s:.1f} s; "
          f"medians of {repeats} after 1 warm-up; total {time.perf_counter() - start:.0f} s")
    print()
    print(table(rows, batch, new_tokens))


if __name__ == "__main__":
    main()
