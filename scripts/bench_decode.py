"""Does one long answer still keep a whole batch decoding? (CPU, ratios measured in one run.)

A random-init Llama-shaped language model (``--hidden`` 512, ``--layers`` 4, vocab 8192, fp32,
one thread) inside a ``LlavaForConditionalGeneration`` (vision tower tiny and unused) decodes
``--batch`` 32 rows of ``--prompt`` 64 random prompt embeddings each through
``generation.greedy``. Where each row stops is scripted (``StopAt``: the real forward passes run,
then EOS is forced at the row's scripted step and forbidden before it), so the cost is the
model's and the lengths are exact. Cases, each the median process CPU time (one thread: other
processes on a shared machine inflate it much less than wall time) of the whole greedy call
(prefill + decode) over ``--repeats`` rounds taken round-robin after one warm-up:

- mixed: 31 rows stop after ``--short`` 4 tokens, one after ``--long`` 256 (finished rows leave the batch);
- mixed, rows kept: the same with every row kept to the end (the loop before rows could leave);
- short batch: the 31 short rows alone; one long row: the long row alone;
- 32 long rows: every row 256 tokens.

Goal: mixed / (short batch + one long row) close to 1, and mixed / 32 long rows far below 1
(mixed, rows kept, is about the 32-long-rows cost). Prints a Markdown table; ``--record`` appends
it to BENCHMARKS.md under "## Decoding with finished rows leaving (bench_decode)".

    .venv/bin/python scripts/bench_decode.py [--repeats 3] [--record]
"""
from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import append_to_section, cpu_model  # noqa: E402
from gpu_check import random_llava  # noqa: E402

from pipeline.model import generation  # noqa: E402

SECTION = "## Decoding with finished rows leaving (bench_decode)"
INTRO = ("`scripts/bench_decode.py`: greedy decoding of 32 rows where 31 answers are short and one is long,\n"
         "against the short batch plus the long row alone and against 32 long rows (one block per run, newest last).")
EOS = 2


def bench_config(hidden: int, layers: int, vocab: int):
    """A Llama language model of the given width and depth; tiny CLIP tower (never run)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(image_size=28, patch_size=14, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=1, num_attention_heads=4, projection_dim=32)
    text = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 11 // 4,
                       num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
                       max_position_embeddings=4096, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1,
                       eos_token_id=EOS)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=vocab - 1,
                       projector_hidden_act="gelu", vision_feature_layer=-2,
                       vision_feature_select_strategy="default", image_seq_length=4)


class StopAt(generation.PlainRunner):
    """The stock runner with scripted answer lengths: row b emits EOS at step ``stops[b]`` (0-based)
    and never before; ``keep_rows`` False keeps every row to the end."""

    def __init__(self, model, stops: list[int], keep_rows: bool):
        super().__init__(model)
        self.stop = torch.tensor(stops)
        self.t = 0
        self.row_state = None if keep_rows else ("mask", "stop")

    def _script(self, logits: torch.Tensor) -> torch.Tensor:
        logits[:, EOS] = torch.where(self.stop == self.t, torch.inf, -torch.inf)
        self.t += 1
        return logits

    def prefill(self, embeds, mask, positions):
        return self._script(super().prefill(embeds, mask, positions))

    def step(self, embeds, positions):
        return self._script(super().step(embeds, positions))


@torch.no_grad()
def seconds(model, stops: list[int], prompt: int, keep_rows: bool) -> float:
    """CPU seconds of one greedy call on ``len(stops)`` rows whose answers end at ``stops``."""
    hidden = model.config.text_config.hidden_size
    n = len(stops)
    embeds = torch.randn(n, prompt, hidden, generator=torch.Generator().manual_seed(n)) * 0.02
    mask = torch.ones(n, prompt, dtype=torch.long)
    positions = torch.arange(prompt).expand(n, prompt)
    runner = StopAt(model, stops, keep_rows)
    start = time.process_time()
    out = generation.greedy(model, embeds, mask, positions, max(stops) + 1, EOS, 0, runner=runner)
    elapsed = time.process_time() - start
    lengths = [row.index(EOS) + 1 for row in out.tokens.tolist()]
    assert lengths == [s + 1 for s in stops], "scripted lengths not honoured"
    return elapsed


def cases(batch: int, short: int, long: int) -> dict[str, tuple[list[int], bool]]:
    """Case name → (per-row stop steps, keep every row)."""
    mixed = [short - 1] * (batch - 1) + [long - 1]
    return {
        "mixed": (mixed, False),
        "mixed, rows kept": (mixed, True),
        "short batch": ([short - 1] * (batch - 1), False),
        "one long row": ([long - 1], False),
        f"{batch} long rows": ([long - 1] * batch, False),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--short", type=int, default=4, help="tokens of a short answer, EOS included")
    parser.add_argument("--long", type=int, default=256, help="tokens of the long answer, EOS included")
    parser.add_argument("--prompt", type=int, default=64, help="prompt tokens per row")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = random_llava(bench_config(args.hidden, args.layers, args.vocab), "cpu", torch.float32)
    todo = cases(args.batch, args.short, args.long)
    for stops, keep in todo.values():  # warm-up
        seconds(model, stops[:2], args.prompt, keep)
    times = {name: [] for name in todo}
    names = list(todo)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            stops, keep = todo[name]
            times[name].append(seconds(model, stops, args.prompt, keep))
    med = {name: statistics.median(t) for name, t in times.items()}
    long_batch = f"{args.batch} long rows"
    parts = med["short batch"] + med["one long row"]
    lines = [f"{datetime.date.today()}, {cpu_model()}, torch {torch.__version__}, {args.threads} thread(s): "
             f"`{shlex.join(['scripts/bench_decode.py', *(argv if argv is not None else sys.argv[1:])])}`; "
             f"{args.batch} rows x {args.prompt} prompt tokens, hidden {args.hidden}, {args.layers} layers, "
             f"vocab {args.vocab}; medians of {args.repeats}", "",
             "| case | rows | answer tokens | CPU s |", "|---|---:|---|---:|"]
    for name, (stops, _) in todo.items():
        lengths = sorted({s + 1 for s in stops})
        lines.append(f"| {name} | {len(stops)} | {' / '.join(map(str, lengths))} | {med[name]:.2f} |")
    lines += ["", f"mixed / (short batch + one long row) = {med['mixed'] / parts:.2f}; "
              f"mixed / {long_batch} = {med['mixed'] / med[long_batch]:.2f}; "
              f"mixed, rows kept / {long_batch} = {med['mixed, rows kept'] / med[long_batch]:.2f}"]
    block = "\n".join(lines)
    print(block)
    if args.record:
        append_to_section(SECTION, INTRO, block)


if __name__ == "__main__":
    main()
