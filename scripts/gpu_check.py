"""Latency, memory and pipeline throughput of a random-init LLaVA-1.5-7B-shaped model on one GPU.

Builds the model on device ``meta``, moves it to the GPU with ``to_empty`` and initialises it
there (transformers' own init: normal weights, norms to one, rotary and position buffers), in
the ``model.dtype`` of the manifest it imitates (``--manifest``, default
``manifests/llava15_7b_paper.yaml``: float16, as the paper runs): no weights, no network, compute
cost equal to the real model's. The header line names the dtype and the manifest it came from. The processor (CLIP 336
image processor, local BPE tokenizer with the LLaVA-1.5 chat template) is the tiny fixture's.

Default: for each method (full, icctp, cls) and budget (576, 128, 64, 32), a batch of 16 distinct
images with VQAv2-style questions is prepared once (``Preprocessor.prepare``: decode, image
processor, tokenization, as the pipeline's CPU stage does) and goes through the adapter's public
steps (``pipeline.model.steps``), timed with a device sync at each boundary (median of
``--repeats`` after one warm-up):

- vision: ``steps.encode`` (tower, CLS attention, projector);
- select: ``steps.select`` (kept = all for full or budget >= n);
- prefill: ``steps.assemble`` + ``steps.generate`` up to the first token;
- generate: the same assembly + ``steps.generate`` for ``--new-tokens`` tokens, EOS ignored
  (``eos_id=-1``, an id the model never emits);
- peak memory: ``torch.cuda.max_memory_allocated`` over the configuration's runs (weights included);
- select share: select / (select + prefill), the part of time-to-first-token after the vision
  tower spent choosing tokens.

``--pipeline N``: the real job instead. The random model is saved (safetensors, with the fixture
processor) to a temporary directory and ``pipeline.run.run_eval`` runs on N synthetic VQAv2-schema
samples (3 questions per generated scene), on a local Ray: prepare → nouns → preprocess (CPU
actors) → one model actor → write → score, once with ``full`` at 576 and once with ``icctp`` at 64.
Prints per budget: questions/s of the model actor (N / its busy time, the sum of the rows' step and
``other_ms`` times) and of the whole job (N / wall time, model loading and Ray start included), the
projected time for 214,354 questions at the actor's rate, the actor's time split
(vision/select/prefill/decode/other) and the peak GPU memory the rows record. Then, in this process,
how many greedy answers (token ids) on ``--compare-samples`` samples differ between batch 1 and
batch ``--compare-batch`` at each budget (fp16/bf16 kernels may differ with batch shape).

``--tiny`` runs the same code on CPU with tiny widths (fp32 whatever the manifest, batch 2, 4 new tokens; with
``--pipeline``: 16 compared samples, batch 4).

    .venv/bin/python scripts/gpu_check.py                     # one NVIDIA GPU, < 5 min
    .venv/bin/python scripts/gpu_check.py --pipeline 4096     # one NVIDIA GPU, < 8 min
    .venv/bin/python scripts/gpu_check.py --tiny [--pipeline 24]   # CPU smoke run
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icctp.nouns import centers_from_groups  # noqa: E402
from pipeline.methods import get_method  # noqa: E402
from pipeline.model import VLM, compat, steps  # noqa: E402
from pipeline.model.inputs import PreparedBatch  # noqa: E402

METHODS = ("full", "icctp", "cls")
BUDGETS = (576, 128, 64, 32)
QUESTIONS = (
    "What color is the umbrella?",
    "How many dogs are in the picture?",
    "What is the man holding?",
    "Is there a red square in the image?",
)
VQAV2_SUFFIX = "\nAnswer the question using a single word or phrase."
VQAV2_QUESTIONS = 214_354
PIPELINE_VARIANTS = (("full", 576), ("icctp", 64))
DEFAULT_MANIFEST = ROOT / "manifests" / "llava15_7b_paper.yaml"


def manifest_dtype(path: Path) -> torch.dtype:
    """The dtype a manifest's model runs in on a GPU (``model.dtype``; unset: float16, as ``resolve_dtype``)."""
    from pipeline.manifest import load_manifest
    from pipeline.model.vlm import resolve_dtype

    return resolve_dtype(load_manifest(path).model.dtype, "cuda")


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


def prepare(vlm: VLM, samples: list[dict]) -> tuple[PreparedBatch, list[torch.Tensor]]:
    """The CPU half (decode, image processor, tokenization) and each sample's noun centers (K, d)."""
    prepared = vlm.preprocessor.prepare(samples, with_centers=True)
    errors = [s.error or s.center_error for s in prepared.samples if s.error or s.center_error]
    if errors:
        raise ValueError(f"synthetic samples failed preprocessing: {errors[:3]}")
    weight = compat.input_embeddings(vlm.model).weight
    return prepared, [centers_from_groups(s.center_ids, weight) for s in prepared.samples]


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
def run_once(vlm: VLM, batch: tuple[PreparedBatch, list[torch.Tensor]], method: str, budget: int, new_tokens: int,
             eos_id: int = -1) -> dict:
    """One pass of every step; seconds per step for the whole batch and the generated ids (B, T)."""
    dev, (prepared, centers) = vlm.device, batch
    rows = prepared.samples
    keys = list(dict.fromkeys(s.image_key for s in rows))
    images = [prepared.images[k] for k in keys]
    merging = "merging_encoder" in get_method(method).needs  # ToMe: its own merging tower pass
    encoded, vision_s = timed(dev, lambda: dict(zip(keys, steps.encode_merged(vlm.model, images, method, budget) if merging
                                                    else steps.encode(vlm.model, images))))
    visuals = [encoded[s.image_key] for s in rows]
    kept, select_s = timed(dev, lambda: steps.select(visuals, method, budget, seeds=[s.seed for s in rows],
                                                     centers=centers if method == "icctp" else None))
    inputs, assemble_s = timed(dev, lambda: steps.assemble(vlm.model, [s.text_ids for s in rows],
                                                           [s.image_pos for s in rows], visuals, kept))
    _, prefill_s = timed(dev, lambda: steps.generate(vlm.model, inputs, 1, eos_id, vlm.pad_id))
    result, generate_s = timed(dev, lambda: steps.generate(vlm.model, inputs, new_tokens, eos_id, vlm.pad_id))
    if eos_id == -1 and result.tokens.shape[1] != new_tokens:
        raise RuntimeError(f"generated {result.tokens.shape[1]} tokens, expected {new_tokens}")
    return dict(vision=vision_s, select=select_s, prefill=assemble_s + prefill_s, generate=assemble_s + generate_s,
                kept=sum(k.n_kept for k in kept) / len(kept), tokens=result.tokens)


def measure(vlm: VLM, prepared: tuple[PreparedBatch, list[torch.Tensor]], method: str, budget: int, new_tokens: int,
            repeats: int) -> dict:
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


def save_model(vlm: VLM, directory: Path) -> Path:
    """The in-memory model (safetensors) and its processor as a checkpoint directory ``load_vlm`` reads."""
    vlm.model.save_pretrained(directory)
    vlm.processor.save_pretrained(directory)
    return directory


def pipeline_run(model_dir: Path, data: Path, out: Path, method: str, budget: int, *, gpu: bool, batch: int,
                 new_tokens: int, dtype: torch.dtype) -> dict:
    """One ``run_eval`` of ``method`` at ``budget`` on the synthetic split; the model actor's numbers."""
    import polars as pl

    from pipeline.manifest import Manifest
    from pipeline.run import run_eval
    from pipeline.stages.schema import PREDICTION_SCHEMA

    manifest = Manifest.model_validate({
        "name": f"gpu-check-{method}-{budget}",
        "model": {"path": str(model_dir), "dtype": str(dtype).removeprefix("torch.")},
        "benchmarks": {"vqav2": {"data_files": str(data)}}, "methods": [{"method": method}], "budgets": [budget],
        "generation": {"max_new_tokens": new_tokens},
        "compute": {"batch_size": batch, "vlm_actors": 1, "num_gpus": 1 if gpu else 0, "shard_rows": 512,
                    "block_rows": batch}})
    start = time.perf_counter()
    run_eval(manifest, out, address="local")
    wall = time.perf_counter() - start
    preds = pl.concat([pl.read_parquet(f) for f in sorted((out / "predictions").rglob("*.parquet"))])
    timing = [c for c in PREDICTION_SCHEMA.names if c.endswith("_ms")]
    sums = {c.removesuffix("_ms"): float(preds[c].fill_null(0.0).sum()) for c in timing}
    busy = sum(sums.values()) / 1e3
    peak = preds["peak_memory_mb"].max()
    return dict(method=method, budget=budget, rows=preds.height, errors=preds["error"].is_not_null().sum(),
                wall_s=wall, busy_s=busy, split={k: 100 * v / 1e3 / busy for k, v in sums.items()},
                peak_gib=None if peak is None else peak / 1024)


@torch.no_grad()
def answers(vlm: VLM, batch: tuple[PreparedBatch, list[torch.Tensor]], method: str, budget: int, size: int,
            new_tokens: int) -> list[tuple[int, ...]]:
    """Greedy token ids per sample (cut at EOS), running the samples in batches of ``size``."""
    prepared, centers = batch
    out = []
    for start in range(0, len(prepared.samples), size):
        index = list(range(start, min(start + size, len(prepared.samples))))
        tokens = run_once(vlm, (prepared.subset(index), [centers[i] for i in index]), method, budget, new_tokens,
                          eos_id=vlm.eos_id)["tokens"]
        for ids in tokens.tolist():
            out.append(tuple(ids[: ids.index(vlm.eos_id)] if vlm.eos_id in ids else ids))
    return out


def batch_effects(vlm: VLM, n: int, size: int, new_tokens: int) -> dict[int, int]:
    """Per pipeline budget: how many of ``n`` samples get other greedy ids at batch 1 than at batch ``size``."""
    batch = prepare(vlm, make_samples(n))
    out = {}
    for method, budget in PIPELINE_VARIANTS:
        alone = answers(vlm, batch, method, budget, 1, new_tokens)
        together = answers(vlm, batch, method, budget, size, new_tokens)
        out[budget] = sum(a != b for a, b in zip(alone, together))
    return out


def pipeline_check(vlm: VLM, n: int, *, gpu: bool, batch: int, new_tokens: int, compare_n: int,
                   compare_batch: int) -> dict:
    """``--pipeline``: the job at each of ``PIPELINE_VARIANTS`` on ``n`` samples, then the batch-effect count."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_pipeline import synthetic_vqav2

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        model_dir = save_model(vlm, tmp / "model")
        saved_s = time.perf_counter() - start
        synthetic_vqav2(tmp / "vqav2.parquet", n)
        runs = [pipeline_run(model_dir, tmp / "vqav2.parquet", tmp / f"run-{m}-{b}", m, b, gpu=gpu, batch=batch,
                             new_tokens=new_tokens, dtype=vlm.dtype) for m, b in PIPELINE_VARIANTS]
    differ = batch_effects(vlm, compare_n, compare_batch, new_tokens)
    return dict(samples=n, saved_s=saved_s, runs=runs, compare_samples=compare_n, compare_batch=compare_batch,
                differ={str(b): d for b, d in differ.items()})


def pipeline_table(result: dict) -> str:
    """One Markdown row per budget: throughput, projection, the actor's time split, memory."""
    lines = ["| method | budget | questions | errors | q/s (model actor) | q/s (job, incl. start) "
             f"| projected {VQAV2_QUESTIONS:,} q | vision % | select % | prefill % | decode % | other % | peak GiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["runs"]:
        rate = r["rows"] / r["busy_s"]
        split = " | ".join(f"{r['split'][k]:.1f}" for k in ("vision", "select", "prefill", "decode", "other"))
        peak = "n/a (cpu)" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        lines.append(f"| {r['method']} | {r['budget']} | {r['rows']} | {r['errors']} | {rate:.1f} "
                     f"| {r['rows'] / r['wall_s']:.1f} | {VQAV2_QUESTIONS / rate / 60:.1f} min | {split} | {peak} |")
    differ = ", ".join(f"budget {b}: {d}" for b, d in result["differ"].items())
    lines += ["", f"Greedy answers that differ between batch 1 and batch {result['compare_batch']} on "
              f"{result['compare_samples']} samples: {differ}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny widths on CPU (smoke test of the same path)")
    parser.add_argument("--batch", type=int, default=None,
                        help="samples per batch (default 16, --pipeline 32; 2 with --tiny, --pipeline 4)")
    parser.add_argument("--new-tokens", type=int, default=None, help="generated tokens (default 16; 4 with --tiny)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed passes per configuration after one warm-up (default 3; 1 with --tiny)")
    parser.add_argument("--pipeline", type=int, default=None, metavar="N",
                        help="run the real job (Ray pipeline, one model actor) on N synthetic samples")
    parser.add_argument("--compare-samples", type=int, default=None,
                        help="--pipeline: samples of the batch-1 vs batch-B comparison (default 256; 16 with --tiny)")
    parser.add_argument("--compare-batch", type=int, default=None,
                        help="--pipeline: the B of that comparison (default 32; 4 with --tiny)")
    parser.add_argument("--record", type=Path, default=None, help="also write the results as JSON to this file")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST,
                        help="the run this check imitates: its model.dtype is the GPU dtype (default: %(default)s)")
    args = parser.parse_args(argv)
    new_tokens = args.new_tokens or (4 if args.tiny else 16)
    repeats = args.repeats or (1 if args.tiny else 3)
    if args.tiny:
        torch.set_num_threads(1)  # tiny tensors: extra threads only add synchronisation on a shared CPU
        device, dtype, card = torch.device("cpu"), torch.float32, "CPU (tiny shapes, 1 thread)"
        dtype_source = "fp32 on CPU"
    else:
        if not torch.cuda.is_available():
            raise SystemExit("gpu_check needs an NVIDIA GPU (torch.cuda.is_available() is False); use --tiny on CPU")
        dtype = manifest_dtype(args.manifest)
        device, card = torch.device("cuda"), torch.cuda.get_device_name(0)
        dtype_source = f"model.dtype of {args.manifest}"

    start = time.perf_counter()
    vlm = build_vlm(args.tiny, device, dtype)
    build_s = time.perf_counter() - start
    header = (f"device: {card}; torch {torch.__version__}; dtype {str(dtype).removeprefix('torch.')} "
              f"({dtype_source}); model built in {build_s:.1f} s")
    if args.pipeline:
        batch = args.batch or (4 if args.tiny else 32)
        result = pipeline_check(vlm, args.pipeline, gpu=not args.tiny, batch=batch, new_tokens=new_tokens,
                                compare_n=args.compare_samples or (16 if args.tiny else 256),
                                compare_batch=args.compare_batch or (4 if args.tiny else 32))
        print(f"{header}, saved in {result['saved_s']:.1f} s; pipeline: {args.pipeline} synthetic VQAv2 samples, "
              f"batch {batch}, {new_tokens} new tokens; total {time.perf_counter() - start:.0f} s")
        print()
        print(pipeline_table(result))
    else:
        batch = args.batch or (2 if args.tiny else 16)
        prepared = prepare(vlm, make_samples(batch))
        rows = [dict(method=method, budget=budget, **measure(vlm, prepared, method, budget, new_tokens, repeats))
                for method in METHODS for budget in BUDGETS]
        n_text = statistics.median(s.n_text for s in prepared[0].samples)
        print(f"{header}; batch {batch}; text tokens/sample {n_text:.0f} + visual; medians of {repeats} after "
              f"1 warm-up; total {time.perf_counter() - start:.0f} s")
        print()
        print(table(rows, batch, new_tokens))
        result = dict(rows=[{k: v for k, v in r.items() if k != "tokens"} for r in rows])
    if args.record:
        args.record.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
