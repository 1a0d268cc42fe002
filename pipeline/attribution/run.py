"""The attribution job: manifest in, ``attributions/`` Parquet and ``attribution.md`` out.

The chain is the evaluation's (``pipeline.run.build_chain``): prepare (driver) → nouns (CPU actors)
→ preprocess (CPU actors) → ``AttributionStage`` (model actors) → write (atomic part files), with
the same resume: each space is a variant ``ciba-<space>`` at the reference budget, so a rerun with
the same ``--output`` does only the rows not yet written. Layout::

    run.json, inputs/benchmark=*/shard-*.parquet, inputs/benchmark=*/images/images-*.parquet
    attributions/benchmark=<entry>[-mismatched]/variant=ciba-<space>/budget=576/part-*.parquet
    attribution.md, attribution_img/

The mismatched-image control (``attribution.control``) is a derived benchmark ``<entry>-mismatched``:
the same rows, each question with the image of the next distinct image of the benchmark (cyclic),
written by the driver beside the prepared inputs; its rows carry no ``evidence_patches``.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from pipeline.manifest import REFERENCE_BUDGET, Manifest, Variant
from pipeline.methods import METHODS
from pipeline.model.vlm import resolve_dtype
from pipeline.run import ModelStage, build_chain, init_ray, input_shards, limit_footer_readers, open_run, resolve_model_path
from pipeline.stages.atomic import write_json_atomic
from pipeline.stages.attribute import AttributionStage, space_label
from pipeline.stages.prepare import SUCCESS, prepare_benchmark, write_shard
from pipeline.stages.resume import plan_resume
from pipeline.stages.shard_images import KEY, ImageStore, read_images
from pipeline.stages.write import partition_dir

CONTROL_SUFFIX = "-mismatched"


@dataclass
class AttributionRun:
    run_dir: Path
    rows_written: int
    rows_total: int
    report: Path | None


def space_variants(manifest: Manifest) -> list[Variant]:
    """One variant per attribution space, at the reference budget (every visual token attributed)."""
    return [Variant(space_label(s), "ciba", REFERENCE_BUDGET) for s in manifest.attribution.spaces]


def pruning_variants(manifest: Manifest) -> list[Variant]:
    """The manifest's variants whose kept indices are recorded: methods that select before the LLM."""
    return [v for v in manifest.variants() if METHODS[v.method].prunes and not METHODS[v.method].in_llm]


def prepare_control(shards: list[Path], out_dir: Path) -> dict:
    """Write the mismatched-image copy of a benchmark's shards into ``out_dir``: each row gets the image
    (and image id) of the next distinct image in shard order, cyclically; no evidence patches. Each
    control shard stores the images its rows use once, like a prepared shard."""
    marker = out_dir / SUCCESS
    if marker.exists():
        return json.loads(marker.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    for k, shard in enumerate(shards):
        rows = pq.read_table(shard).to_pylist()
        images = read_images(shard)
        nxt = shards[(k + 1) % len(shards)]
        first = pq.read_table(nxt, columns=["image_id", KEY]).slice(0, 1).to_pylist()[0]
        if first[KEY] is not None and first[KEY] not in images:
            images[first[KEY]] = ImageStore(keep=1).fetch(str(nxt), [first[KEY]])[0]
        groups = list({r["image_id"]: r[KEY] for r in rows}.items()) + [(first["image_id"], first[KEY])]
        position = {image_id: g for g, (image_id, _) in enumerate(groups[:-1])}
        used: dict[str, bytes] = {}
        for row in rows:
            image_id, key = groups[position[row["image_id"]] + 1]
            if image_id == row["image_id"]:
                raise ValueError(f"the mismatched-image control needs at least two images, {out_dir.name} has one; "
                                 "set attribution.control: false")
            row.update(image_id=image_id, evidence_patches=None, **{KEY: key})
            row["benchmark"] += CONTROL_SUFFIX
            if key is not None:
                used.setdefault(key, images[key])
        write_shard(out_dir, k, rows, used)
    record = {"control_of": out_dir.name.removeprefix("benchmark=").removesuffix(CONTROL_SUFFIX), "n_shards": len(shards)}
    write_json_atomic(record, marker)
    return record


def stage_kwargs(manifest: Manifest, model_path: str, dtype: str) -> dict:
    spec = manifest.attribution
    bottleneck = dict(alpha0=spec.alpha0, steps=spec.steps, lr=spec.lr, n_noise=spec.n_noise)

    def sigma(value):
        return None if value == "rms" else value

    clip = None if spec.clip is None else dict(spec.clip.model_dump(), sigma=sigma(spec.clip.sigma))
    return dict(model_path=model_path, methods=pruning_variants(manifest), dtype=dtype,
                image=dict(bottleneck, beta=spec.beta_image), text=dict(bottleneck, beta=spec.beta_text),
                shared=dict(sigma=sigma(spec.shared.sigma), temperature=spec.shared.temperature), clip=clip,
                control_suffix=CONTROL_SUFFIX, chunk=spec.chunk)


def check_rows(attributions_dir: Path, shards: dict[str, list[Path]], variants: list[Variant]) -> None:
    """Raise naming every benchmark x space whose rows do not cover its inputs exactly once."""
    problems = []
    for bench, files in shards.items():
        ids = pl.scan_parquet(files).select("sample_id").collect()["sample_id"]
        for v in variants:
            parts = sorted(partition_dir(attributions_dir, bench, v.label, v.budget).glob("part-*.parquet"))
            got = pl.scan_parquet(parts).select("sample_id").collect()["sample_id"] if parts else pl.Series([], dtype=pl.String)
            missing, dup = set(ids) - set(got), got.len() - got.n_unique()
            if missing or dup or set(got) - set(ids):
                problems.append(f"  {bench} {v.label}: {len(missing)} missing, {dup} duplicated")
    if problems:
        raise RuntimeError("attributions do not match the inputs:\n" + "\n".join(problems))


def run_attribution(manifest: Manifest, run_dir: Path, *, limit: int | None = None,
                    address: str | None = None) -> AttributionRun:
    """Prepare (and derive the control), run the chain on what is pending, check, write ``attribution.md``."""
    from pipeline.attribution.report import write_attribution_report

    if manifest.attribution is None:
        raise ValueError(f"manifest {manifest.name!r} has no attribution: section")
    limit_footer_readers()
    run_dir = Path(run_dir).resolve()
    info = open_run(manifest, run_dir, limit)
    compute = manifest.compute
    inputs = run_dir / "inputs"
    prepared = {name: prepare_benchmark(name, src, inputs / f"benchmark={name}", compute.shard_rows, limit)
                for name, src in manifest.benchmarks.items()}
    langs = {name: src.nouns for name, src in manifest.benchmarks.items()}
    if manifest.attribution.control:
        for name in manifest.benchmarks:
            control = name + CONTROL_SUFFIX
            prepared[control] = prepare_control(input_shards(run_dir, [name])[name], inputs / f"benchmark={control}")
            langs[control] = langs[name]
    info["datasets"] = prepared
    write_json_atomic(info, run_dir / "run.json")

    variants = space_variants(manifest)
    out_dir = run_dir / "attributions"
    shards = input_shards(run_dir, prepared)
    plan = plan_resume([s for files in shards.values() for s in files], out_dir, variants)
    written = 0
    if plan.shards:
        init_ray(address)
        model_path = resolve_model_path(manifest.model.path)
        device = "cuda" if compute.num_gpus else "cpu"
        dtype = str(resolve_dtype(manifest.model.dtype, device)).removeprefix("torch.")
        stage = ModelStage(AttributionStage, stage_kwargs(manifest, model_path, dtype), preprocess=(model_path, dtype))
        ds = build_chain(plan, compute, stage, variants, info["run_id"], out_dir, langs)
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            written += sum(batch.column("n").to_pylist())
    check_rows(out_dir, shards, variants)
    report = write_attribution_report(run_dir, manifest)
    info["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_json_atomic(info, run_dir / "run.json")
    return AttributionRun(run_dir, written, plan.rows_done + plan.rows_todo, report)
