"""``load_vlm`` and ``VLM``: preprocess (CPU), then encode → select → assemble → generate.

``VLM.generate(samples)`` = ``Preprocessor.prepare`` (``pipeline.model.inputs``: checks, decoding,
image processor, tokenization) + ``VLM.answer`` (``pipeline.model.steps`` on a prepared batch: the
model actor's whole job). Budgets, kept positions and clusters are as ``steps`` describes. A method
that prunes inside the LLM gives a pruner (``icctp.layer_pruners``) that ``layer_prune`` runs: the
visual tokens enter the LLM whole, ``n_kept`` counts those left after its last pruning layer and
``tokens_equiv`` their average over the decoder layers (for every other method both are the kept
count); a budget the pruner cannot meet on this model is an error on every row of the call.

Per-row timings are the batch's wall time of each step divided evenly over the batch's valid rows
(ms); ``prefill_ms`` includes the assembly of the input embeddings. A row whose input is bad
(undecodable image, empty prompt or question, phrase not in the question) gets ``error`` set and
``prediction=None``; the rest of the batch runs as usual.
"""
from __future__ import annotations

import contextlib

import torch

from icctp.nouns import centers_from_groups
from pipeline.methods import Method, get_method
from pipeline.model import batching, compat, families, layer_prune, steps
from pipeline.model.inputs import Memo, PreparedBatch, PreparedSample, Preprocessor
from pipeline.model.timing import STEP_TIMINGS, now_ms


class VLM:
    """A loaded LLaVA-1.5 / LLaVA-NeXT model with its processor (see ``load_vlm``)."""

    def __init__(self, model, processor):
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.preprocessor = Preprocessor(processor, model.config, self.dtype)
        self.image_token_id = self.preprocessor.image_token_id
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id
        self._vision_cache: dict | None = None
        self._memo: Memo | None = None

    @contextlib.contextmanager
    def reuse_vision(self):
        """Within this block, an image encoded by one ``answer``/``generate`` call is reused by the next.

        For running several methods/budgets on the same batch: the vision tower runs once per
        image; later calls report ``vision_ms`` of only what they encoded themselves.
        """
        self._vision_cache, self._memo = {}, Memo()
        try:
            yield self
        finally:
            self._vision_cache, self._memo = None, None

    @property
    def device(self) -> torch.device:
        return compat.input_embeddings(self.model).weight.device

    @property
    def dtype(self) -> torch.dtype:
        return compat.input_embeddings(self.model).weight.dtype

    def render(self, prompt: str) -> str:
        """The full text for a user turn ``prompt`` (chat template, one ``<image>``)."""
        return self.preprocessor.render(prompt)

    @torch.no_grad()
    def generate(self, samples: list[dict], method: str = "icctp", budget: int = 64,
                 max_new_tokens: int = 16, **method_kwargs) -> list[dict]:
        """Answer each sample greedily with ``method`` keeping ``budget`` visual tokens (per 576).

        samples: dicts with ``image`` (bytes | PIL), ``prompt`` (user turn), ``question`` (for nouns;
        the prompt when the key is absent; None or blank is an error row), ``noun_phrases``
        (list[str] | None -> spaCy). Returns what ``answer`` returns.
        """
        spec = _check_arguments(method, budget, max_new_tokens)
        prepared = self.preprocessor.prepare(samples, with_centers="noun_centers" in spec.needs, memo=self._memo)
        return self.answer(prepared, method, budget, max_new_tokens, **method_kwargs)

    @torch.no_grad()
    def answer(self, prepared: PreparedBatch, method: str = "icctp", budget: int = 64,
               max_new_tokens: int = 16, max_batch_tokens: int | None = None, **method_kwargs) -> list[dict]:
        """Run encode → select → assemble → generate on a prepared batch.

        ``max_batch_tokens``: assemble and generate in chunks of rows whose left-padded prompt
        (text + kept visual tokens) fits this many tokens (``batching.token_chunks``); None: the
        whole batch at once. Vision and selection always run on the whole batch.

        Returns one dict per sample, in order: prediction, n_visual, n_kept, tokens_equiv,
        budget_mode and layer_tokens (in-LLM methods; else None), n_text, kept_indices, kept_clusters,
        noun_phrases, center_source, error, timings {vision_ms, select_ms, prefill_ms, decode_ms}.
        """
        spec = _check_arguments(method, budget, max_new_tokens)
        with_centers = "noun_centers" in spec.needs
        errors, centers = self._centers(prepared.samples) if with_centers else \
            ([s.error for s in prepared.samples], None)
        outs = [_empty(s, with_centers, error) for s, error in zip(prepared.samples, errors)]
        live = [i for i, error in enumerate(errors) if error is None]
        if not live:
            return outs
        rows = [prepared.samples[i] for i in live]
        centers = None if centers is None else [centers[i] for i in live]
        dev = self.device
        timings = {}

        start = now_ms(dev)
        if "merging_encoder" in spec.needs:  # the method's own tower pass (ToMe), per budget, not cached
            keys = list(dict.fromkeys(row.image_key for row in rows))
            images = [prepared.images[k] for k in keys]
            merged = dict(zip(keys, steps.encode_merged(self.model, images, method, budget)))
            visuals = [merged[row.image_key] for row in rows]
        else:
            cache = self._vision_cache if self._vision_cache is not None else {}
            keys = [k for k in dict.fromkeys(row.image_key for row in rows) if k not in cache]
            if keys:
                cache.update(zip(keys, steps.encode(self.model, [prepared.images[k] for k in keys])))
            visuals = [cache[row.image_key] for row in rows]
        vision_done = now_ms(dev)
        timings["vision_ms"] = vision_done - start

        kept = steps.select(visuals, method, budget, seeds=[row.seed for row in rows], centers=centers,
                            **({} if spec.in_llm else method_kwargs))
        select_done = now_ms(dev)
        timings["select_ms"] = select_done - vision_done

        n_layers = len(compat.decoder_layers(self.model))
        if spec.in_llm:
            try:
                pruner = spec.function()(budget, n_layers, **method_kwargs)
                for n_visual in {v.n_visual for v in visuals}:
                    pruner.check(n_visual)
            except ValueError as exc:
                for slot in live:
                    outs[slot]["error"] = f"{type(exc).__name__}: {exc}"
                return outs
        tokens: list[torch.Tensor | None] = [None] * len(rows)
        layer_tokens: list[list[int] | None] = [None] * len(rows)
        timings["prefill_ms"] = timings["decode_ms"] = 0.0
        lengths = [row.n_text + keep.n_kept for row, keep in zip(rows, kept)]
        for chunk in batching.token_chunks(lengths, max_batch_tokens):
            chunk_start = now_ms(dev)
            inputs = steps.assemble(self.model, [rows[i].text_ids for i in chunk], [rows[i].image_pos for i in chunk],
                                    [visuals[i] for i in chunk], [kept[i] for i in chunk])
            runner = None
            if spec.in_llm:  # a fresh pruner per chunk: a pruner keeps per-prefill state (SparseVLM's raters)
                runner = layer_prune.LayerPruneRunner(self.model, spec.function()(budget, n_layers, **method_kwargs),
                                                      [rows[i].image_pos for i in chunk],
                                                      [visuals[i].n_visual for i in chunk])
            assembly_ms = now_ms(dev) - chunk_start
            result = steps.generate(self.model, inputs, max_new_tokens, self.eos_id, self.pad_id, runner=runner)
            timings["prefill_ms"] += assembly_ms + result.prefill_ms
            timings["decode_ms"] += result.decode_ms
            for j, i in enumerate(chunk):
                tokens[i] = result.tokens[j]
                if runner is not None:
                    kept[i] = steps.Kept(runner.kept[j])
                    layer_tokens[i] = runner.layer_tokens[j].tolist()
        mode = pruner.mode if spec.in_llm else None

        share = {name: value / len(rows) for name, value in timings.items()}
        for slot, visual, keep, ids, per_layer in zip(live, visuals, kept, tokens, layer_tokens, strict=True):
            n_kept = keep.n_kept if per_layer is None else per_layer[-1]
            outs[slot].update(
                prediction=self._decode(ids),
                n_visual=visual.n_visual if visual.n_source is None else visual.n_source,
                n_kept=n_kept,
                tokens_equiv=float(n_kept) if per_layer is None else sum(per_layer) / len(per_layer),
                budget_mode=None if per_layer is None else mode,
                layer_tokens=per_layer,
                kept_indices=None if visual.n_source is not None else [int(i) for i in keep.indices],
                kept_clusters=None if keep.clusters is None else [int(c) for c in keep.clusters],
                timings=dict(share),
            )
        return outs

    def _centers(self, samples: list[PreparedSample]) -> tuple[list[str | None], list[torch.Tensor | None]]:
        """Per sample: the error that stops it under icctp (input, phrases or token ids), else its
        noun centers (K, d_llm) float32."""
        weight = compat.input_embeddings(self.model).weight
        errors, centers = [], []
        for sample in samples:
            error, center = sample.error or sample.center_error, None
            if error is None:
                try:
                    center = centers_from_groups(sample.center_ids, weight)
                except ValueError as exc:
                    error = f"{type(exc).__name__}: {exc}"
            errors.append(error)
            centers.append(center)
        return errors, centers

    def _decode(self, tokens: torch.Tensor) -> str:
        ids = tokens.tolist()
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


def _check_arguments(method: str, budget: int, max_new_tokens: int) -> Method:
    """The registry entry of ``method``; ValueError for an unknown method or a bad budget or limit."""
    spec = get_method(method)
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be an int >= 1, got {budget!r}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    return spec


def _empty(sample: PreparedSample, with_centers: bool, error: str | None) -> dict:
    """The output of a sample before (or instead of) running it."""
    failed_centers = with_centers and error is not None
    return dict(
        prediction=None, n_visual=None, n_kept=None, tokens_equiv=None, budget_mode=None, layer_tokens=None,
        n_text=sample.n_text,
        kept_indices=None, kept_clusters=None,
        noun_phrases=[] if failed_centers else list(sample.phrases),
        center_source=sample.center_source if with_centers and error is None else None, error=error,
        timings={name: 0.0 for name in STEP_TIMINGS},
    )


def load_vlm(path_or_hub_id, device="cpu", dtype=None) -> VLM:
    """Load a LLaVA-1.5 or LLaVA-NeXT checkpoint (picked from its config) with its processor.

    Safetensors weights only, no remote code; ``dtype``: see ``resolve_dtype``. The model is
    built on the meta device and each tensor is read from the checkpoint straight onto ``device``
    in ``dtype`` (``device_map``), so a GPU actor never holds a host copy of the weights.
    """
    import transformers
    from transformers import AutoConfig, AutoProcessor

    path = str(path_or_hub_id)
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    try:
        family = families.family(config)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    device = torch.device(device)
    model = getattr(transformers, family.MODEL_CLASS).from_pretrained(
        path, dtype=resolve_dtype(dtype, device.type), use_safetensors=True, trust_remote_code=False,
        attn_implementation="sdpa", device_map={"": device},
    )
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=False)
    return VLM(model, processor)


def resolve_dtype(dtype: str | torch.dtype | None, device_type: str) -> torch.dtype:
    """The model dtype: ``dtype`` (a name like "bfloat16" or a torch dtype), else float32 on CPU and
    float16 on an accelerator."""
    if dtype is None:
        return torch.float32 if device_type == "cpu" else torch.float16
    return dtype if isinstance(dtype, torch.dtype) else getattr(torch, dtype)
