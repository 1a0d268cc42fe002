"""Scale rehearsal: a VQAv2-validation-sized run through the real chain with a STAND-IN model stage.

    .venv/bin/python scripts/bench_scale.py [--questions 214354] [--ms-per-question 5] [--record]
    .venv/bin/python scripts/bench_scale.py --real-images [--questions 20000] [--record]

Data: ``--questions`` synthetic rows in the VQAv2 schema (default 214,354 questions over 40,504
small generated images, 5.29 per image, same-image rows adjacent, as in lmms-lab/VQAv2 validation).
The run uses the pipeline's own pieces: prepare (driver) → the chain of ``pipeline.run.build_chain``
(read → [PendingFilter] → nouns → [preprocess, where the chain has it] → model → write) → score →
report. The model stage is ``StandInModelStage``: a STAND-IN that loads no model and answers a
fixed string after sleeping ``--ms-per-question`` per row (the default 5 ms ≈ 200 questions/s,
just above the 180 questions/s a GPU must sustain for 214,354 questions in 20 minutes). It lives
only in this script.

The run is killed (SIGKILL, driver and Ray) once about half of the part files are written, then
resumed in a fresh process. Reported: questions/s of each stage (rows over the stage's summed busy
time in the resumed half, i.e. per actor/task), end-to-end chain throughput, the resume rescan time,
rows lost/duplicated against the inputs, scoring and report time, peak driver RSS, part-file
count. ``--record`` appends the table to BENCHMARKS.md; ``--out`` keeps the run directory and
writes ``bench_scale.json`` there.

``--real-images`` (default 20,000 questions) measures the data path with COCO-sized images instead:
640×480 JPEGs of ~160 KB (the scene's shapes under seeded Gaussian noise, JPEG quality 90: COCO
val2014 averages ~160 KB at about that size), 5.29 questions per image. The run is not killed; it
reports per operator the rows it output, the bytes it put into Ray's object store (Ray Data's
``output_size_bytes``: the summed sizes of the blocks the operator produced, i.e. what the next
operator receives) and its rows per busy second, and the total of those bytes over the chain.
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))

from benchlib import append_to_section, cpu_model  # noqa: E402
from raytools import kill_started, ray_env, short_tmpdir  # noqa: E402

from pipeline.fixtures import datasets as fx  # noqa: E402
from pipeline.fixtures import tiny_model_path  # noqa: E402
from pipeline.manifest import Manifest  # noqa: E402
from pipeline.stages.schema import PREDICTION_SCHEMA  # noqa: E402

VQAV2_QUESTIONS, VQAV2_IMAGES = 214_354, 40_504
REAL_IMAGE_QUESTIONS = 20_000
COCO_SIZE, JPEG_NOISE, JPEG_QUALITY = (640, 480), 22.0, 90  # ~160 KB per image, as COCO val2014
SECTION = "## Scale rehearsal (bench_scale)"
INTRO = ("`scripts/bench_scale.py`: a VQAv2-validation-sized run through prepare → chain → score with a\n"
         "STAND-IN model stage (fixed answer after a sleep), killed at mid-run and resumed (newest last).")
RESULT = "bench_scale.json"
LISTING = ("ReadFiles", "ListFiles")  # Ray Data's file listing: its busy time is the lister's lifetime, not work


class StandInModelStage:
    """STAND-IN for the model stage, for the scale rehearsal only: no model, no image, no GPU.

    Same contract as ``VLMStage`` (constructed with ``variants`` and ``run_id``; one prediction row
    per input row and pending variant, ``PREDICTION_SCHEMA``), answering ``answer`` to every
    question after sleeping ``ms_per_question`` per row of the batch.
    """

    def __init__(self, variants: list, run_id: str, answer: str = "yes", ms_per_question: float = 5.0):
        self.variants = variants
        self.run_id = run_id
        self.answer = answer
        self.ms_per_question = ms_per_question

    def __call__(self, batch: pa.Table) -> pa.Table:
        time.sleep(self.ms_per_question * batch.num_rows / 1000)
        pending = batch.column("pending").to_pylist() if "pending" in batch.column_names else None
        parts = []
        for v in self.variants:
            rows = batch if pending is None else batch.filter(pa.array([v.key in p for p in pending]))
            n = rows.num_rows
            cols = {f.name: pa.nulls(n, f.type) for f in PREDICTION_SCHEMA}
            cols.update({c: rows.column(c).combine_chunks()
                         for c in ("benchmark", "sample_id", "image_id", "question", "prompt", "targets", "noun_phrases",
                                   "noun_lang")})
            cols.update(run_id=pa.array([self.run_id] * n), variant=pa.array([v.label] * n),
                        method=pa.array([v.method] * n), budget=pa.array([v.budget] * n, pa.int32()),
                        prediction=pa.array([self.answer] * n))
            parts.append(pa.table([cols[f.name] for f in PREDICTION_SCHEMA], schema=PREDICTION_SCHEMA))
        return pa.concat_tables(parts)


def questions_per_image(n_questions: int, n_images: int) -> list[int]:
    """How many questions each image gets: ``n_questions`` spread as evenly as possible (5 or 6 for VQAv2)."""
    base, extra = divmod(n_questions, n_images)
    return [base + (i < extra) for i in range(n_images)]


def coco_jpeg(scene, noise: np.random.Generator) -> dict:
    """``scene`` rendered at COCO size under Gaussian noise, as a ~160 KB JPEG (HF ``Image()`` storage)."""
    pixels = np.asarray(fx.render(scene), dtype=np.float32)
    pixels += noise.normal(0.0, JPEG_NOISE, pixels.shape).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=JPEG_QUALITY)
    return {"bytes": buf.getvalue(), "path": None}


def synthesize(path: Path, n_questions: int, seed: int = 0, chunk_images: int = 2000, real_images: bool = False) -> int:
    """Write ``n_questions`` VQAv2-schema rows over proportionally many images; return the image count.

    Images: small PNG scenes, or with ``real_images`` 640×480 JPEGs of ~160 KB (``coco_jpeg``).
    """
    n_images = max(1, round(n_questions * VQAV2_IMAGES / VQAV2_QUESTIONS))
    rng, noise, writer, rows = random.Random(seed), np.random.default_rng(seed), None, []
    counts = questions_per_image(n_questions, n_images)
    if real_images:
        chunk_images = min(chunk_images, 200)  # a row group of ~1,000 rows × 160 KB
    for i, k in enumerate(counts):
        if real_images:
            scene = fx.random_scene(rng, COCO_SIZE, rng.randint(2, 4))
            image = coco_jpeg(scene, noise)
        else:
            w, h = fx.SIZES[i % len(fx.SIZES)]
            scene = fx.random_scene(rng, (w // 4, h // 4), rng.randint(2, 4))
            image = fx.png(scene)
        image_id = 1_000_000 + i
        questions = fx.vqa_questions(rng, scene) + fx.vqa_questions(rng, scene)
        for j, (q, a, a_type, q_type, alts) in enumerate(questions[:k]):
            answers = fx.annotators(rng, a, alts)
            rows.append({"question_type": q_type, "multiple_choice_answer": a, "image_id": image_id,
                         "answers": [{"answer": x, "answer_confidence": "yes", "answer_id": m + 1}
                                     for m, x in enumerate(answers)],
                         "answer_type": a_type, "question_id": image_id * 10 + j, "question": q, "image": image})
        if (i + 1) % chunk_images == 0 or i + 1 == n_images:
            table = Dataset.from_dict({c: [r[c] for r in rows] for c in fx.VQAV2_FEATURES},
                                      features=fx.VQAV2_FEATURES).data.table
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            rows = []
    writer.close()
    return n_images


def bench_manifest(data: Path, args: argparse.Namespace) -> Manifest:
    return Manifest.model_validate({
        "name": "bench-scale", "model": {"path": "stand-in (no model)"},
        "benchmarks": {"vqav2": {"data_files": str(data), "streaming": True}},
        "methods": [{"method": "icctp"}], "budgets": args.budgets,
        "compute": {"batch_size": args.batch_size, "block_rows": args.block_rows, "shard_rows": args.shard_rows,
                    "vlm_actors": 1, "vlm_num_cpus": 0.25, "nouns_actors": args.nouns_actors}})


def peak_rss_mb() -> float:
    """This process's peak resident set size (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def operator_stats(summary) -> list:
    """Ray Data's per-operator stats of an executed chain, first operator first."""
    return [op for parent in summary.parents if parent for op in operator_stats(parent)] + summary.operators_stats


def start_local_ray(attempts: int = 5) -> None:
    """``init_ray("local")``, retried: on a loaded machine the raylet can miss Ray's fixed start-up
    windows (30 s for the node, and its wait for the dashboard agent). What a failed attempt left
    running under this process's private ``RAY_TMPDIR`` is stopped before the next."""
    import ray

    from pipeline.run import init_ray

    for attempt in range(attempts):
        try:
            init_ray("local")
            return
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception on a start-up timeout
            log(f"Ray did not start ({e}); attempt {attempt + 1} of {attempts}")
            ray.shutdown()
            if os.environ.get("RAY_TMPDIR", "").startswith("/tmp/icr"):
                kill_started(os.environ["RAY_TMPDIR"])
            time.sleep(10)
    raise RuntimeError(f"Ray did not start in {attempts} attempts")


def run_child(run_dir: Path) -> None:
    """One driver process: prepare, plan, chain, score, report; records each phase in ``child-<pid>.json``."""
    from pipeline.report import write_report
    from pipeline.run import ModelStage, build_chain, input_shards, open_run, score_run
    from pipeline.stages.atomic import write_json_atomic
    from pipeline.stages.prepare import prepare_benchmark
    from pipeline.stages.resume import plan_resume

    spec = json.loads((run_dir / "bench.json").read_text())
    manifest = Manifest.model_validate(spec["manifest"])
    out, path = {}, run_dir / f"child-{os.getpid()}.json"

    def phase(name: str, start: float) -> None:
        out[f"{name}_s"] = time.perf_counter() - start
        out["peak_rss_mb"] = peak_rss_mb()
        write_json_atomic(out, path)

    info = open_run(manifest, run_dir, None)
    t = time.perf_counter()
    src = manifest.benchmarks["vqav2"]
    prepare_benchmark("vqav2", src, run_dir / "inputs" / "benchmark=vqav2", manifest.compute.shard_rows)
    phase("prepare", t)
    variants = manifest.variants()
    t = time.perf_counter()
    shards = input_shards(run_dir, manifest.benchmarks)["vqav2"]
    plan = plan_resume(shards, run_dir / "predictions", variants)
    out.update(rows_done_before=plan.rows_done, rows_todo=plan.rows_todo, shards=len(shards),
               shards_finished=plan.n_finished_shards, shards_partial=plan.n_partial_shards,
               pending_rows_shipped=len(plan.pending))
    phase("rescan", t)
    if plan.shards:
        start_local_ray()
        # The real CPU preprocess stage (the tiny LLaVA-1.5's processor: 336 px, as LLaVA-1.5-7B) feeds the stand-in.
        model = ModelStage(StandInModelStage, {"ms_per_question": spec["ms_per_question"]},
                           preprocess=(str(tiny_model_path("llava15")), "float32"))
        ds = build_chain(plan, manifest.compute, model, variants, info["run_id"], run_dir / "predictions")
        t = time.perf_counter()
        written = sum(sum(b.column("n").to_pylist()) for b in ds.iter_batches(batch_format="pyarrow", batch_size=None))
        out["rows_written"] = written
        out["operators"] = [
            {"name": op.operator_name, "busy_s": op.wall_time.sum if op.wall_time else None,
             "cpu_s": op.cpu_time.sum if op.cpu_time else None,
             "rows_out": op.output_num_rows.sum if op.output_num_rows else None,
             "bytes_out": op.output_size_bytes.sum if op.output_size_bytes else None}
            for op in operator_stats(ds.get_stats_summary())]
        phase("chain", t)
    t = time.perf_counter()
    score_run(run_dir, manifest)
    phase("score", t)
    t = time.perf_counter()
    write_report(run_dir)
    phase("report", t)


def start_child(run_dir: Path, ray_tmp: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", str(run_dir)], env=ray_env(ray_tmp), cwd=REPO,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=open(run_dir / "child.log", "a"))


def vm_hwm_mb(pid: int) -> float:
    """Peak RSS (VmHWM, MiB) of a live process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def killed_at_mid_run(run_dir: Path, rows_at_kill: int, timeout: float) -> dict:
    """Start the run, SIGKILL driver and Ray once ``rows_at_kill`` prediction rows are on disk; the driver's state then."""
    tmp = short_tmpdir()
    proc = start_child(run_dir, tmp)
    start, deadline, seen = time.perf_counter(), time.monotonic() + timeout, {}
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            for f in (run_dir / "predictions").rglob("part-*.parquet"):
                seen[f] = seen.get(f) or pq.read_metadata(f).num_rows
            if sum(seen.values()) >= rows_at_kill:
                break
            time.sleep(0.05)
        if proc.poll() is not None:
            raise RuntimeError(f"the run ended (rc {proc.returncode}) before it could be killed: see {run_dir}/child.log")
        rss = vm_hwm_mb(proc.pid)
    finally:
        kill_started(tmp, group=proc.pid)
        proc.wait()
    record = json.loads(next(run_dir.glob(f"child-{proc.pid}.json")).read_text())
    return {**record, "peak_rss_mb": rss, "killed_after_s": time.perf_counter() - start,
            "parts_at_kill": len(list((run_dir / "predictions").rglob("part-*.parquet"))),
            "temp_files_at_kill": len(list((run_dir / "predictions").rglob(".*.tmp")))}


def resumed(run_dir: Path, timeout: float) -> dict:
    tmp = short_tmpdir()
    proc = start_child(run_dir, tmp)
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        kill_started(tmp, group=proc.pid)
    if rc != 0:
        raise RuntimeError(f"the resumed run failed (rc {rc}): see {run_dir}/child.log")
    return json.loads((run_dir / f"child-{proc.pid}.json").read_text())


def lost_and_duplicated(run_dir: Path, variants: list) -> tuple[int, int, int]:
    """(input × variant rows with no prediction, prediction rows beyond one per key, prediction rows)."""
    key = ["benchmark", "sample_id", "variant", "budget"]
    inputs = pl.scan_parquet(sorted((run_dir / "inputs").rglob("shard-*.parquet"))).select("benchmark", "sample_id")
    want = inputs.join(pl.LazyFrame({"variant": [v.label for v in variants],
                                     "budget": pl.Series([v.budget for v in variants], dtype=pl.Int32)}), how="cross")
    preds = pl.scan_parquet(sorted((run_dir / "predictions").rglob("part-*.parquet")), hive_partitioning=False).select(key)
    lost = want.join(preds, on=key, how="anti").select(pl.len()).collect().item()
    n = preds.select(pl.len()).collect().item()
    return lost, n - preds.unique().select(pl.len()).collect().item(), n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--questions", type=int,
                   help=f"default {VQAV2_QUESTIONS} ({REAL_IMAGE_QUESTIONS} with --real-images)")
    p.add_argument("--real-images", action="store_true",
                   help="COCO-sized JPEGs; one uninterrupted run; report object-store bytes per operator")
    p.add_argument("--ms-per-question", type=float, default=5.0, help="the stand-in's sleep per row")
    p.add_argument("--budgets", type=lambda s: [int(b) for b in s.split(",")], default=[64],
                   help="icctp variants (one per budget)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--block-rows", type=int, default=128)
    p.add_argument("--shard-rows", type=int, default=1000)
    p.add_argument("--nouns-actors", type=int, default=1)
    p.add_argument("--timeout", type=float, default=6 * 3600, help="seconds per run phase")
    p.add_argument("--out", type=Path, help="keep the run directory here (default: a temp dir)")
    p.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.questions is None:
        args.questions = REAL_IMAGE_QUESTIONS if args.real_images else VQAV2_QUESTIONS
    if args.child:
        run_child(args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if args.real_images:
            report_images(bench_images(root, args), args)
        else:
            report(bench(root, args), args)


def log(message: str) -> None:
    print(f"{dt.datetime.now():%H:%M:%S} {message}", file=sys.stderr, flush=True)


def bench(root: Path, args: argparse.Namespace) -> dict:
    data, n_images, synth_s = source_split(root, args)
    run_dir = root / "run"
    log(f"{args.questions} questions over {n_images} images ready in {synth_s:.0f} s; run, kill at mid-run")
    shutil.rmtree(run_dir, ignore_errors=True)
    manifest = bench_manifest(data, args)
    variants = manifest.variants()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "bench.json").write_text(json.dumps({"manifest": manifest.model_dump(mode="json"),
                                                    "ms_per_question": args.ms_per_question}))
    kill = killed_at_mid_run(run_dir, max(1, args.questions * len(variants) // 2), args.timeout)
    log(f"killed after {kill['killed_after_s']:.0f} s; resuming")
    final = resumed(run_dir, args.timeout)
    log("resumed run finished; counting rows")
    lost, duplicated, n_rows = lost_and_duplicated(run_dir, variants)
    result = {"questions": args.questions, "images": n_images, "variants": len(variants), "synthesize_s": synth_s,
              "kill": kill, "resume": final, "lost": lost, "duplicated": duplicated, "prediction_rows": n_rows,
              "part_files": len(list((run_dir / "predictions").rglob("part-*.parquet"))),
              "args": {k: str(v) for k, v in vars(args).items()}}
    (root / RESULT).write_text(json.dumps(result, indent=2))
    return result


def source_split(root: Path, args: argparse.Namespace) -> tuple[Path, int, float]:
    """(the synthetic source split, its image count, seconds to write it; 0 when reused from ``--out``)."""
    data = root / ("vqav2_coco_sized.parquet" if args.real_images else "vqav2_synthetic.parquet")
    t = time.perf_counter()
    if data.exists() and pq.read_metadata(data).num_rows == args.questions:  # from an earlier run in --out
        return data, pl.scan_parquet(data).select(pl.col("image_id").n_unique()).collect().item(), 0.0
    n_images = synthesize(data, args.questions, real_images=args.real_images)
    return data, n_images, time.perf_counter() - t


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def bench_images(root: Path, args: argparse.Namespace) -> dict:
    """One uninterrupted run on COCO-sized images: prepare, chain, score; the chain's per-operator stats."""
    data, n_images, synth_s = source_split(root, args)
    log(f"{args.questions} questions over {n_images} COCO-sized JPEGs ({data.stat().st_size / 1e6:.0f} MB) ready "
        f"in {synth_s:.0f} s; run")
    run_dir = root / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    manifest = bench_manifest(data, args)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "bench.json").write_text(json.dumps({"manifest": manifest.model_dump(mode="json"),
                                                    "ms_per_question": args.ms_per_question}))
    final = resumed(run_dir, args.timeout)
    lost, duplicated, n_rows = lost_and_duplicated(run_dir, manifest.variants())
    result = {"questions": args.questions, "images": n_images, "variants": len(manifest.variants()),
              "source_bytes": data.stat().st_size, "inputs_bytes": tree_bytes(run_dir / "inputs"),
              "run": final, "lost": lost, "duplicated": duplicated, "prediction_rows": n_rows,
              "args": {k: str(v) for k, v in vars(args).items()}}
    (root / RESULT).write_text(json.dumps(result, indent=2))
    return result


def report_images(r: dict, args: argparse.Namespace) -> None:
    run = r["run"]
    ops = [op for op in run.get("operators", []) if op["name"] not in LISTING]
    moved = sum(op["bytes_out"] or 0 for op in ops)
    rows = [("questions / images", f"{r['questions']} / {r['images']}"),
            ("source split / prepared inputs on disk", f"{r['source_bytes'] / 1e6:.0f} MB / {r['inputs_bytes'] / 1e6:.0f} MB"),
            ("prepare (driver)", f"{r['questions'] / run['prepare_s']:.0f} q/s ({run['prepare_s']:.1f} s)")]
    rows += [(op["name"], f"{(op['bytes_out'] or 0) / 1e6:.1f} MB out, {op['rows_out']} rows out, "
              + (f"{op['rows_out'] / op['busy_s']:.0f} rows per busy s ({op['busy_s']:.1f} s busy)"
                 if op["busy_s"] and op["rows_out"] else "busy time not recorded"))
             for op in ops]
    rows += [("object store: bytes the operators output, summed", f"{moved / 1e6:.1f} MB"),
             ("chain end to end (all stages concurrent, actor start-up included)",
              f"{r['questions'] / run['chain_s']:.0f} q/s ({run['chain_s']:.1f} s)"),
             ("rows lost / duplicated", f"{r['lost']} / {r['duplicated']}")]
    emit(rows, args, ", COCO-sized images", "", f"--real-images --questions {args.questions}")
    if r["lost"] or r["duplicated"]:
        sys.exit(1)


def report(r: dict, args: argparse.Namespace) -> None:
    kill, final, nv = r["kill"], r["resume"], r["variants"]
    q_resumed = final["rows_todo"] / nv
    rows = [("questions / images / variants", f"{r['questions']} / {r['images']} / {nv}"),
            ("synthesize the source split (not a stage)", f"{r['synthesize_s']:.1f} s"),
            ("prepare (driver, one process, whole split)",
             f"{r['questions'] / kill['prepare_s']:.0f} q/s ({kill['prepare_s']:.1f} s)")]
    rows += [(f"{op['name']}: questions per busy s / per CPU s",
              f"{q_resumed / op['busy_s']:.0f} / {q_resumed / op['cpu_s']:.0f} ({op['rows_out']} rows out, "
              f"{op['busy_s']:.1f} s busy, {op['cpu_s']:.1f} s CPU)")
             for op in final.get("operators", []) if op["busy_s"] and op.get("cpu_s") and op["name"] not in LISTING]
    rows += [
        ("chain end to end, resumed part (read → write, all stages concurrent)",
         f"{q_resumed / final['chain_s']:.0f} q/s ({q_resumed:.0f} questions in {final['chain_s']:.1f} s)"),
        ("killed after / prediction rows on disk then",
         f"{kill['killed_after_s']:.0f} s / {final['rows_done_before']} of {r['prediction_rows']}"),
        ("resume rescan (plan per shard)", f"{final['rescan_s']:.2f} s: {final['shards_finished']} shards skipped, "
         f"{final['shards_partial']} partial ({final['pending_rows_shipped']} rows with pending keys shipped), "
         f"{final['shards'] - final['shards_finished'] - final['shards_partial']} untouched"),
        ("rows lost / duplicated", f"{r['lost']} / {r['duplicated']}"),
        ("scoring (check + score, polars) / report", f"{final['score_s']:.1f} s / {final['report_s']:.1f} s"),
        ("peak driver RSS: killed run / resumed run", f"{kill['peak_rss_mb']:.0f} MiB / {final['peak_rss_mb']:.0f} MiB"),
        ("part files", str(r["part_files"])),
    ]
    emit(rows, args, "", f"{args.nouns_actors} nouns actor(s), ", f"--questions {args.questions}")
    if r["lost"] or r["duplicated"]:
        sys.exit(1)


def emit(rows: list[tuple[str, str]], args: argparse.Namespace, title: str, setup: str, flags: str) -> None:
    """Print ``rows`` as a Markdown table; with ``--record`` append it to BENCHMARKS.md under a heading
    (``title`` after the date), the machine and settings (``setup`` after the stand-in's) and the command
    (``scripts/bench_scale.py <flags> --record``)."""
    table = "\n".join(["| measure | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])
    print(table)
    if args.record:
        append_to_section(SECTION, INTRO, f"### {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC{title}\n\n"
                          f"{os.cpu_count()} cores ({cpu_model()}), shared; stand-in {args.ms_per_question} ms per "
                          f"question, batch {args.batch_size}, block {args.block_rows} rows, shard {args.shard_rows} "
                          f"rows, {setup}load average at the end {os.getloadavg()[0]:.1f}.\nCommand: `.venv/bin/python "
                          f"scripts/bench_scale.py {flags} --record`\n\n{table}")


if __name__ == "__main__":
    main()
