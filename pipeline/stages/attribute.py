"""attribute: CIBA attribution rows for a batch of preprocessed questions (the attribution job's model stage).

A callable class for ``map_batches`` in the chain prepare → nouns → preprocess → attribute → write
(``pipeline.attribution.run``). ``__init__`` loads the LLaVA checkpoint (its visual tokens, CLS
attention and input embeddings) and, for the ``clip`` space, the CLIP model once per actor.
``__call__`` maps preprocessed rows to one attribution row per row and pending space variant
(``ATTRIBUTION_SCHEMA``): the image's raw attribution per visual token, the question's words with
attribution, POS tag and noun-phrase flag, and the kept indices of the manifest's pruning variants
on the same question (the same ``steps.select`` the evaluation runs). A row the model cannot take
(undecodable image, empty question, a question longer than CLIP's context) keeps its place with
``error`` set.
"""
from __future__ import annotations

import pyarrow as pa
import torch

from icctp.ciba import BottleneckConfig
from icctp.nouns import centers_from_groups
from pipeline.attribution.words import question_words, word_attribution
from pipeline.manifest import Variant
from pipeline.methods import get_method
from pipeline.model import compat, steps
from pipeline.model.timing import now_ms
from pipeline.stages.preprocess import from_arrow

WORDS = pa.list_(pa.struct([("text", pa.string()), ("start", pa.int32()), ("end", pa.int32()), ("pos", pa.string()),
                            ("tag", pa.string()), ("in_np", pa.bool_()), ("attribution", pa.float64())]))
KEPT = pa.list_(pa.struct([("variant", pa.string()), ("method", pa.string()), ("budget", pa.int32()),
                           ("indices", pa.list_(pa.int32()))]))
ATTRIBUTION_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("benchmark", pa.string()),  # the manifest entry; "<entry>-mismatched" for the control rows
    ("sample_id", pa.string()),
    ("image_id", pa.string()),
    ("variant", pa.string()),  # "ciba-<space>"
    ("space", pa.string()),  # "shared" | "clip"
    ("budget", pa.int32()),  # the reference budget: every visual token is attributed
    ("control", pa.bool_()),  # the question with another question's image
    ("question", pa.string()),
    ("error", pa.string()),
    ("noun_lang", pa.string()),
    ("noun_phrases", pa.list_(pa.string())),
    ("n_visual", pa.int32()),
    ("image_attribution", pa.list_(pa.float32())),  # raw capacity per visual token, nats (not min-max scaled)
    ("image_keep", pa.list_(pa.float32())),  # mean mask value per visual token at the read-out
    ("image_relevance", pa.float64()),  # the read-out pass's mean cosine, image bottleneck
    ("words", WORDS),  # question words in order; attribution: raw capacity of their pieces, nats
    ("text_relevance", pa.float64()),
    ("kept", KEPT),  # kept visual-token positions of the manifest's pruning variants
    ("evidence_patches", pa.list_(pa.int32())),
    ("attribute_ms", pa.float64()),  # the actor's batch time per row
])
INPUT_FIELDS = ("benchmark", "sample_id", "image_id", "question", "noun_lang", "noun_spans", "evidence_patches")


def space_label(space: str) -> str:
    return f"ciba-{space}"


class AttributionStage:
    """CIBA on a batch of preprocessed rows, for each pending space variant.

    variants: ``Variant(space_label(space), "ciba", budget)`` per space; methods: the manifest's
    pruning variants whose kept indices are recorded; image/text: ``BottleneckConfig`` fields but
    ``sigma`` per side; shared: ``{sigma, temperature}``; clip: ``{path, image_layer, text_layer, sigma}``;
    chunk: questions per bottleneck batch.
    """

    def __init__(self, model_path: str, variants: list[Variant], run_id: str, methods: list[Variant],
                 image: dict, text: dict, shared: dict, clip: dict | None = None, control_suffix: str = "-mismatched",
                 chunk: int = 16, dtype: str | None = None, device: str | None = None):
        from pipeline.attribution.spaces import SharedSpace
        from pipeline.model import load_vlm

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.vlm = load_vlm(model_path, device=device, dtype=dtype)
        self.variants, self.run_id, self.methods = variants, run_id, methods
        self.control_suffix, self.chunk = control_suffix, chunk
        self.spaces = {}
        if any(v.label == space_label("shared") for v in variants):
            sigma = shared.get("sigma")
            self.spaces["shared"] = SharedSpace(
                self.vlm.model, self.vlm.tokenizer, BottleneckConfig(**image, sigma=sigma),
                BottleneckConfig(**text, sigma=sigma), temperature=shared.get("temperature"))
        if any(v.label == space_label("clip") for v in variants):
            clip = clip or {}
            sigma = clip.get("sigma", 1.0)
            self.spaces["clip"] = load_clip_space(clip, BottleneckConfig(**image, sigma=sigma),
                                                  BottleneckConfig(**text, sigma=sigma), device, self.vlm.dtype)

    def __call__(self, batch: pa.Table) -> pa.Table:
        start = now_ms(self.vlm.device)
        prepared = from_arrow(batch)
        fields = [f for f in (*INPUT_FIELDS, "pending") if f in batch.column_names]
        rows = batch.select(fields).to_pylist()
        words = question_words([r["question"] for r in rows], [r["noun_lang"] for r in rows],
                               [r["noun_spans"] for r in rows])
        errors = [s.error for s in prepared.samples]
        live = [i for i, e in enumerate(errors) if e is None]
        visuals, kept = {}, {}
        if live:
            keys = list(dict.fromkeys(prepared.samples[i].image_key for i in live))
            encoded = dict(zip(keys, steps.encode(self.vlm.model, [prepared.images[k] for k in keys])))
            visuals = {i: encoded[prepared.samples[i].image_key] for i in live}
            kept = self._kept(prepared, live, visuals)
        out = []
        for v in self.variants:
            todo = [i for i, r in enumerate(rows) if "pending" not in r or v.key in r["pending"]]
            results = self._attribute(v, prepared, rows, [i for i in todo if i in visuals], visuals)
            for i in todo:
                res = results.get(i)
                error = errors[i] or (res if isinstance(res, str) else None)
                out.append(self._row(v, rows[i], words[i], None if error else res, kept.get(i, []), visuals.get(i),
                                     error))
        per_row = (now_ms(self.vlm.device) - start) / max(len(out), 1)
        for row in out:
            row["attribute_ms"] = per_row
        return pa.Table.from_pylist(out, schema=ATTRIBUTION_SCHEMA)

    def _kept(self, prepared, live: list[int], visuals: dict) -> dict[int, list[dict]]:
        """Kept positions per live row and pruning variant (a row whose noun centers fail gets none for
        the methods that need them)."""
        weight = compat.input_embeddings(self.vlm.model).weight
        out = {i: [] for i in live}
        for v in self.methods:
            spec = get_method(v.method)
            rows = live
            centers = None
            if "noun_centers" in spec.needs:
                rows = [i for i in live if prepared.samples[i].center_error is None]
                centers = [centers_from_groups(prepared.samples[i].center_ids, weight) for i in rows]
            if not rows:
                continue
            picks = steps.select([visuals[i] for i in rows], v.method, v.budget,
                                 seeds=[prepared.samples[i].seed for i in rows], centers=centers, **v.params)
            for i, pick in zip(rows, picks):
                out[i].append({"variant": v.label, "method": v.method, "budget": v.budget,
                               "indices": [int(x) for x in pick.indices]})
        return out

    def _attribute(self, v: Variant, prepared, rows: list[dict], todo: list[int], visuals: dict) -> dict:
        """Row index -> ``Attribution`` (or an error string) for space variant ``v``."""
        space = self.spaces[v.label.removeprefix("ciba-")]
        out = {}
        for start in range(0, len(todo), self.chunk):
            group = todo[start:start + self.chunk]
            if space.name == "clip":
                bad = {i for i in group if visuals[i].n_visual != space.n_patches}
                out.update({i: f"ValueError: the CLIP space's {space.n_patches} patches do not map onto "
                               f"{visuals[i].n_visual} visual tokens" for i in bad})
                group = [i for i in group if i not in bad]
                if not group:
                    continue
                inputs = [prepared.images[prepared.samples[i].image_key].pixel_values for i in group]
            else:
                inputs = [visuals[i].tokens for i in group]
            questions = [rows[i]["question"] for i in group]
            seeds = [prepared.samples[i].seed for i in group]
            try:
                results = space.attribute(questions, inputs, seeds)
            except ValueError:
                results = [self._one(space, rows[i]["question"], inp, seed)
                           for i, inp, seed in zip(group, inputs, seeds)]
            out.update(zip(group, results))
        return out

    @staticmethod
    def _one(space, question: str, inputs, seed: int):
        """One question alone (after its batch failed): its ``Attribution`` or its error string."""
        try:
            return space.attribute([question], [inputs], [seed])[0]
        except ValueError as exc:
            return f"{type(exc).__name__}: {exc}"

    def _row(self, v: Variant, row: dict, words: list, res, kept: list[dict], visual, error: str | None) -> dict:
        word_values = word_attribution(words, res.pieces, res.text.tolist()) if res is not None else None
        benchmark = row["benchmark"]
        return {
            "run_id": self.run_id, "benchmark": benchmark, "sample_id": row["sample_id"], "image_id": row["image_id"],
            "variant": v.label, "space": v.label.removeprefix("ciba-"), "budget": v.budget,
            "control": benchmark.endswith(self.control_suffix), "question": row["question"], "error": error,
            "noun_lang": row.get("noun_lang"), "noun_phrases": [s["text"] for s in row.get("noun_spans") or []],
            "n_visual": None if visual is None else visual.n_visual,
            "image_attribution": None if res is None else res.image.tolist(),
            "image_keep": None if res is None else res.image_keep.tolist(),
            "image_relevance": None if res is None else res.image_relevance,
            "words": [dict(w._asdict(), attribution=None if word_values is None else word_values[k])
                      for k, w in enumerate(words)],
            "text_relevance": None if res is None else res.text_relevance,
            "kept": kept if error is None else [],
            "evidence_patches": row.get("evidence_patches"),
            "attribute_ms": None,
        }


def load_clip_space(clip: dict, image: BottleneckConfig, text: BottleneckConfig, device: str, dtype: torch.dtype):
    """``ClipSpace`` of ``clip["path"]`` (a directory, hub id or ``fixture:clip``) on ``device``."""
    from transformers import AutoTokenizer, CLIPModel

    from pipeline.attribution.spaces import ClipSpace
    from pipeline.fixtures import tiny_clip_path
    from pipeline.manifest import FIXTURE_PREFIX

    path = clip.get("path")
    if not path:
        raise ValueError("the clip space needs attribution.clip.path")
    if path == f"{FIXTURE_PREFIX}clip":
        path = str(tiny_clip_path())
    model = CLIPModel.from_pretrained(path, dtype=dtype, use_safetensors=True, attn_implementation="sdpa").to(device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return ClipSpace(model, tokenizer, image, text, clip.get("image_layer"), clip.get("text_layer"))
