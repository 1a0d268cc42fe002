"""``load_vlm`` and ``VLM.generate``: decode, encode once per image, prune, assemble, decode greedily.

Budgets are per 576 visual tokens: an image with n feature tokens keeps
``icctp.budget.scaled_budget(budget, n, 576)`` of them (LLaVA-1.5: ``min(budget, 576)``), split
over its grids by ``split_budget``; LLaVA-NeXT newline tokens are kept on top and counted in
``n_kept``. ``kept_indices`` are positions in the image's visual sequence (as the stock model
splices it); ``kept_clusters`` (icctp only) align with them: cluster index, -1 for global
preselection (and grids kept whole), -2 for NeXT newlines. Merged tokens (visionzip) follow the
kept ones and count in ``n_kept``. FastV keeps ``scaled_budget(budget, n_visual, 576)`` image
positions inside the LLM (K=2 by default; ``K`` is its method kwarg).

Per-row timings are the batch's wall time of each stage divided evenly over the batch's valid rows
(ms). A row whose input is bad (undecodable image, empty prompt or question, phrase not in the
question) gets ``error`` set and ``prediction=None``; the rest of the batch runs as usual.
"""
from __future__ import annotations

import contextlib
import zlib
from dataclasses import dataclass, field

import torch

from icctp.nouns import Phrase, as_phrases, question_centers
from pipeline.model import compat, fastv, generation, images, llava, llava_next
from pipeline.model.assemble import left_pad, splice
from pipeline.model.timing import now_ms

REFERENCE_TOKENS = 576
EXTRA_METHODS = ("fastv",)


@dataclass
class _Row:
    """A sample after input checks: text ids with one ``<image>`` at ``image_pos``."""

    image: object = None
    key: str = ""
    text_ids: list[int] = field(default_factory=list)
    image_pos: int = -1
    phrases: list = field(default_factory=list)
    centers: torch.Tensor | None = None
    center_source: str | None = None
    seed: int = 0
    error: str | None = None


def _methods() -> tuple[str, ...]:
    from icctp.baselines import METHODS

    return tuple(METHODS) + EXTRA_METHODS


class VLM:
    """A loaded LLaVA-1.5 / LLaVA-NeXT model with its processor (see ``load_vlm``)."""

    def __init__(self, model, processor):
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.is_next = model.config.model_type == "llava_next"
        self.family = llava_next if self.is_next else llava
        self.image_token_id = compat.image_token_id(model.config)
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id
        self._vision_cache: dict | None = None
        self._decode_memo: dict[bytes, tuple] = {}

    @contextlib.contextmanager
    def reuse_vision(self):
        """Within this block, an image encoded by one ``generate`` call is reused by the next ones.

        For running several methods/budgets on the same batch: the vision tower runs once per
        image; later calls report ``vision_ms`` of only what they encoded themselves.
        """
        self._vision_cache, self._decode_memo = {}, {}
        try:
            yield self
        finally:
            self._vision_cache, self._decode_memo = None, {}

    @property
    def device(self) -> torch.device:
        return compat.input_embeddings(self.model).weight.device

    def render(self, prompt: str) -> str:
        """The full text for a user turn ``prompt`` (chat template, one ``<image>``)."""
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(conversation, add_generation_prompt=True)

    def _decoded(self, image) -> tuple:
        """(RGB image, pixel key) of ``image``; encoded bytes seen before in this batch (or within
        ``reuse_vision``) are not decoded again."""
        if not isinstance(image, (bytes, bytearray)):
            decoded = images.decode_image(image)
            return decoded, images.image_key(decoded)
        memo = self._decode_memo
        if image not in memo:
            decoded = images.decode_image(image)
            memo[image] = (decoded, images.image_key(decoded))
        return memo[image]

    def _prepare(self, sample: dict, method: str) -> _Row:
        row = _Row()
        try:
            prompt = sample.get("prompt")
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError("empty prompt")
            question = sample["question"] if "question" in sample else prompt
            if not isinstance(question, str) or not question.strip():
                raise ValueError("empty question")
            row.image, row.key = self._decoded(sample.get("image"))
            row.text_ids = self.tokenizer(self.render(prompt)).input_ids
            where = [i for i, t in enumerate(row.text_ids) if t == self.image_token_id]
            if len(where) != 1:
                raise ValueError(f"rendered prompt must hold exactly one image token, found {len(where)}")
            row.image_pos = where[0]
            row.seed = zlib.crc32(f"{prompt}\0{row.key}".encode())
            spans = sample.get("noun_spans")
            phrases = None if spans is None else as_phrases(spans)
            if method == "icctp":
                self._centers(row, question, phrases)
            elif phrases is not None:
                row.phrases = [p.text for p in phrases]
        except (ValueError, images.ImageError) as exc:
            row.error = f"{type(exc).__name__}: {exc}"
        return row

    def _centers(self, row: _Row, question: str, phrases: list[Phrase] | None) -> None:
        if phrases is None:
            raise ValueError("icctp needs the question's noun_spans (pipeline.nlp.question_phrases)")
        weight = compat.input_embeddings(self.model).weight
        centers, source = question_centers(question, phrases, self.tokenizer, weight)
        row.phrases, row.centers, row.center_source = [p.text for p in phrases], centers, source

    @torch.no_grad()
    def generate(self, samples: list[dict], method: str = "icctp", budget: int = 64,
                 max_new_tokens: int = 16, **method_kwargs) -> list[dict]:
        """Answer each sample greedily with ``method`` keeping ``budget`` visual tokens (per 576).

        samples: dicts with ``image`` (bytes | PIL), ``prompt`` (user turn), ``question`` (for nouns;
        the prompt when the key is absent; None or blank is an error row), ``noun_spans`` (the
        question's noun phrases as ``icctp.nouns.Phrase``s or ``{text, start, end}`` dicts, from
        ``pipeline.nlp.question_phrases``; required by icctp). Returns one dict per
        sample, in order: prediction, n_visual, n_kept, n_text, kept_indices, kept_clusters,
        noun_phrases, center_source, error, timings {vision_ms, select_ms, prefill_ms, decode_ms}.
        """
        methods = _methods()
        if method not in methods:
            raise ValueError(f"unknown method {method!r}; expected one of {methods}")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget must be an int >= 1, got {budget!r}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        try:
            return self._generate(samples, method, budget, max_new_tokens, method_kwargs)
        finally:
            if self._vision_cache is None:
                self._decode_memo = {}

    def _generate(self, samples, method, budget, max_new_tokens, method_kwargs) -> list[dict]:
        rows = [self._prepare(sample, method) for sample in samples]
        outs = [self._empty(row) for row in rows]
        live = [i for i, row in enumerate(rows) if row.error is None]
        if not live:
            return outs
        rows = [rows[i] for i in live]
        timings = {}

        start = now_ms(self.device)
        cache = self._vision_cache if self._vision_cache is not None else {}
        keys = [k for k in dict.fromkeys(row.key for row in rows) if k not in cache]
        first = {row.key: row for row in reversed(rows)}
        if keys:
            cache.update(zip(keys, self.family.visual_tokens(self.model, self.processor,
                                                            [first[k].image for k in keys])))
        encoded = cache
        visuals = [encoded[row.key] for row in rows]
        vision_done = now_ms(self.device)
        timings["vision_ms"] = vision_done - start


        if method in ("full", "fastv"):
            picks = [_keep_all(v) for v in visuals]
        else:
            picks = self._select(method, budget, rows, visuals, method_kwargs)
        timings["select_ms"] = now_ms(self.device) - vision_done

        embed = compat.input_embeddings(self.model)
        sequences = []
        for row, visual, (kept, _, merged) in zip(rows, visuals, picks):
            text = embed(torch.tensor(row.text_ids, device=self.device))  # (L, d)
            tokens = visual.tokens[kept]
            if merged is not None and merged.numel():
                tokens = torch.cat([tokens, merged.to(tokens.dtype)])
            sequences.append(splice(text, row.image_pos, tokens))
        embeds, mask, positions = left_pad(sequences)
        runner = None
        if method == "fastv":
            spans = [(row.image_pos, v.n_visual, _scaled(budget, v.n_visual)) for row, v in zip(rows, visuals)]
            runner = fastv.FastVRunner(self.model, spans, **method_kwargs)
        result = generation.greedy(self.model, embeds, mask, positions, max_new_tokens, self.eos_id,
                                   self.pad_id, runner=runner)
        timings["prefill_ms"], timings["decode_ms"] = result.prefill_ms, result.decode_ms
        if runner is not None:
            picks = [(kept, None, None) for kept in runner.kept]

        share = {name: value / len(rows) for name, value in timings.items()}
        for slot, row, visual, (kept, clusters, merged), tokens in zip(live, rows, visuals, picks, result.tokens):
            n_merged = 0 if merged is None else int(merged.shape[0])
            outs[slot].update(
                prediction=self._decode(tokens),
                n_visual=visual.n_visual,
                n_kept=int(kept.numel()) + n_merged,
                kept_indices=[int(i) for i in kept],
                kept_clusters=None if clusters is None else [int(c) for c in clusters],
                timings=dict(share),
            )
        return outs

    def _select(self, method, budget, rows, visuals, params):
        """Kept positions, clusters and merged tokens per row; grids of equal size and budget share one call."""
        from icctp.budget import split_budget

        per_row = [[] for _ in rows]  # (grid, kept positions, clusters | None, merged | None)
        jobs = {}
        for r, visual in enumerate(visuals):
            sizes = [int(g.numel()) for g in visual.grids]
            total = _scaled(budget, visual.n_features)
            for g, (grid, grid_budget) in enumerate(zip(visual.grids, split_budget(total, sizes))):
                if grid_budget >= grid.numel():
                    per_row[r].append((g, grid, None, None))
                else:
                    jobs.setdefault((int(grid.numel()), grid_budget), []).append((r, g))
        centers = mask = None
        if jobs:
            from icctp.baselines import select
        if jobs and method == "icctp":
            from icctp.nouns import pad_centers

            centers, mask = pad_centers([row.centers for row in rows])
            centers, mask = centers.to(self.device), mask.to(self.device)
        for (_, grid_budget), members in jobs.items():
            tokens = torch.stack([visuals[r].tokens[visuals[r].grids[g]] for r, g in members])  # (G, n, d)
            cls_attn = torch.stack([visuals[r].grid_cls[g] for r, g in members])  # (G, n)
            kwargs = dict(seeds=[(rows[r].seed + 7919 * g) % 2**31 for r, g in members])
            if centers is not None:
                index = torch.tensor([r for r, _ in members], device=self.device)
                kwargs.update(centers=centers[index], center_mask=mask[index])
            selection = select(method, tokens.float(), cls_attn.float(), grid_budget, **kwargs, **params)
            clusters = getattr(selection, "clusters", None)
            merged = getattr(selection, "merged", None)
            for j, (r, g) in enumerate(members):
                grid = visuals[r].grids[g]
                per_row[r].append((
                    g,
                    grid[selection[j].to(grid.device)],
                    None if clusters is None else clusters[j],
                    None if merged is None else merged[j],
                ))
        return [_combine(visual, sorted(parts, key=lambda p: p[0]), method)
                for visual, parts in zip(visuals, per_row)]

    def _decode(self, tokens: torch.Tensor) -> str:
        ids = tokens.tolist()
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    @staticmethod
    def _empty(row: _Row) -> dict:
        return dict(
            prediction=None, n_visual=None, n_kept=None,
            n_text=len(row.text_ids) - 1 if row.text_ids else None,
            kept_indices=None, kept_clusters=None, noun_phrases=list(row.phrases),
            center_source=row.center_source, error=row.error,
            timings=dict(vision_ms=0.0, select_ms=0.0, prefill_ms=0.0, decode_ms=0.0),
        )


GLOBAL_CLUSTER = -1
FIXED_CLUSTER = -2


def _scaled(budget: int, n: int) -> int:
    from icctp.budget import scaled_budget

    return scaled_budget(budget, n, REFERENCE_TOKENS)


def _keep_all(visual) -> tuple[torch.Tensor, None, None]:
    return torch.arange(visual.n_visual, device=visual.tokens.device), None, None


def _combine(visual, parts, method):
    """Merge per-grid picks with the fixed positions: sorted kept positions, aligned clusters, merged tokens."""
    kept = torch.cat([p[1] for p in parts] + [visual.fixed])
    with_clusters = method == "icctp" and any(p[2] is not None for p in parts)
    clusters = None
    if with_clusters:
        pieces = [p[2].to(kept.device) if p[2] is not None else torch.full_like(p[1], GLOBAL_CLUSTER) for p in parts]
        clusters = torch.cat(pieces + [torch.full_like(visual.fixed, FIXED_CLUSTER)])
    order = torch.argsort(kept)
    kept = kept[order]
    clusters = None if clusters is None else clusters[order]
    merged = [p[3] for p in parts if p[3] is not None and p[3].numel()]
    return kept, clusters, (torch.cat(merged) if merged else None)


def load_vlm(path_or_hub_id, device="cpu", dtype=None) -> VLM:
    """Load a LLaVA-1.5 or LLaVA-NeXT checkpoint (picked from its config) with its processor.

    Safetensors weights only, no remote code; ``dtype`` defaults to float32 on CPU, float16 else.
    """
    from transformers import (
        AutoConfig,
        AutoProcessor,
        LlavaForConditionalGeneration,
        LlavaNextForConditionalGeneration,
    )

    path = str(path_or_hub_id)
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    classes = {"llava": LlavaForConditionalGeneration, "llava_next": LlavaNextForConditionalGeneration}
    if config.model_type not in classes:
        raise ValueError(f"{path}: model_type {config.model_type!r} is not one of {sorted(classes)}")
    device = torch.device(device)
    if dtype is None:
        dtype = torch.float32 if device.type == "cpu" else torch.float16
    model = classes[config.model_type].from_pretrained(
        path, dtype=dtype, use_safetensors=True, trust_remote_code=False, attn_implementation="sdpa"
    ).to(device)
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=False)
    return VLM(model, processor)
