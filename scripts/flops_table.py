"""Print the FLOPs-reduction tables of docs/flops.md from ``icctp.flops``.

Usage: python scripts/flops_table.py
"""
from __future__ import annotations

from icctp.flops import llava_flops

TEXT_TOKENS = 64  # LLaVA-1.5 template + a ~10-token VQAv2 question + the short-answer suffix
FIT_TEXT_TOKENS = 56  # text length at which hypothesis B reproduces the paper's figures best
SETTINGS = (  # model, unpruned visual tokens, ((kept, paper's TFLOPs reduction % or None), ...)
    ("llava-1.5-7b", 576, ((128, None), (64, None), (32, 82.36))),
    ("llava-1.5-13b", 576, ((144, None), (58, 80.3), (29, 84.7))),
    ("llava-next-7b", 2880, ((640, None), (320, 87.5), (160, 92.3))),
)


def reduction(model: str, full: int, kept: int, n_text: int, parts: tuple[str, ...],
              n_new: int = 1, vision_passes: int | None = None) -> float:
    """FLOPs reduction in % of the summed ``parts`` when ``full`` visual tokens become ``kept``."""
    def cost(n_visual: int) -> int:
        flops = llava_flops(model, n_visual, n_text, n_new, vision_passes=vision_passes)
        return sum(flops[p] for p in parts)

    return 100.0 * (1.0 - cost(kept) / cost(full))


def prefill_only(model: str, full: int, kept: int, n_text: int) -> float:
    """Hypothesis A: LLM prefill layers only (no LM head, no vision, no decode)."""
    return reduction(model, full, kept, n_text, ("prefill",), n_new=0)


def single_pass_vision(model: str, full: int, kept: int, n_text: int) -> float:
    """Hypothesis B: one 336px vision pass + projector + LLM prefill layers."""
    return reduction(model, full, kept, n_text, ("vision", "projector", "prefill"), n_new=0, vision_passes=1)


def fitted_text_tokens(hypothesis, model: str, full: int, kept: int, target: float) -> int:
    """Integer text length in [0, 400] whose reduction is closest to ``target``."""
    return min(range(401), key=lambda t: abs(hypothesis(model, full, kept, t) - target))


def reductions_table() -> list[str]:
    lines = [
        f"| model | visual tokens | pruned | LLM prefill (T={TEXT_TOKENS}) | end-to-end, 1 new token "
        f"(T={TEXT_TOKENS}) | end-to-end, 16 new tokens (T={TEXT_TOKENS}) | paper |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, full, points in SETTINGS:
        for kept, paper in points:
            end_to_end = [reduction(model, full, kept, TEXT_TOKENS, ("total",), n_new=n) for n in (1, 16)]
            lines.append(
                f"| {model} | {full} → {kept} | {100 * (1 - kept / full):.1f}% "
                f"| {prefill_only(model, full, kept, TEXT_TOKENS):.2f}% "
                f"| {end_to_end[0]:.2f}% | {end_to_end[1]:.2f}% "
                f"| {'—' if paper is None else f'{paper}%'} |"
            )
    return lines


def fit_table() -> list[str]:
    lines = [
        f"| model | visual tokens | paper | A: text length fit | A at T={TEXT_TOKENS} | "
        f"B: text length fit | B at T={FIT_TEXT_TOKENS} |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, full, points in SETTINGS:
        for kept, paper in points:
            if paper is None:
                continue
            fit_a = fitted_text_tokens(prefill_only, model, full, kept, paper)
            fit_b = fitted_text_tokens(single_pass_vision, model, full, kept, paper)
            lines.append(
                f"| {model} | {full} → {kept} | {paper}% | {fit_a} "
                f"| {prefill_only(model, full, kept, TEXT_TOKENS):.2f}% | {fit_b} "
                f"| {single_pass_vision(model, full, kept, FIT_TEXT_TOKENS):.2f}% |"
            )
    return lines


def absolute_table() -> list[str]:
    lines = [f"| model | vision | projector | prefill at full tokens (T={TEXT_TOKENS}) | one decode step |",
             "|---|---|---|---|---|"]
    for model, full, _ in SETTINGS:
        one = llava_flops(model, full, TEXT_TOKENS, 1)
        two = llava_flops(model, full, TEXT_TOKENS, 2)
        lines.append(f"| {model} | {one['vision'] / 1e12:.3f} | {one['projector'] / 1e12:.3f} "
                     f"| {one['prefill'] / 1e12:.2f} | {two['decode'] / 1e12:.4f} |")
    return lines


def render() -> str:
    return "\n\n".join("\n".join(t) for t in (reductions_table(), fit_table(), absolute_table()))


if __name__ == "__main__":
    print(render())
