"""Toy-world tables: the real VQAv2/POPE schemas plus evidence, deterministic, answers true of the image."""
from __future__ import annotations

import io
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_fixture_datasets import HUB_SCHEMAS, describe

from pipeline.benchmarks import iter_samples
from pipeline.fixtures import toyworld as tw


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return tw.write_tables(tmp_path_factory.mktemp("toyworld"), seed=3, n=41)


def rows(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_tables_have_the_hub_schema_plus_evidence_and_load_through_the_cards(tables):
    for name, path in tables.items():
        ds = datasets.load_dataset("parquet", data_files={"test": str(path)}, split="test")
        got = {col: describe(feature) for col, feature in ds.features.items()}
        assert got == {**HUB_SCHEMAS[name], "evidence_patches": "list<int32>"}, name
        assert len(ds) == 41
        samples = list(iter_samples(name, data_files={"test": str(path)}))
        assert [s["evidence_patches"] for s in samples] == [r["evidence_patches"] for r in rows(path)]


@pytest.mark.slow
def test_same_seed_rebuilds_byte_identical_and_another_seed_differs(tables, tmp_path):
    again = tw.write_tables(tmp_path / "same", seed=3, n=41)
    other = tw.write_tables(tmp_path / "other", seed=4, n=6)
    for name, path in tables.items():
        assert path.read_bytes() == again[name].read_bytes(), name
        assert [r["question"] for r in rows(path)][:6] != [r["question"] for r in rows(other[name])], name


PALETTE = np.array(list(tw.COLORS.values()), float)  # (8, 3)


def patch_pixels(image: np.ndarray) -> np.ndarray:
    """(576, 196, 3) pixels of each 14x14 patch, raster order."""
    grid = image.reshape(tw.GRID, tw.PATCH, tw.GRID, tw.PATCH, 3).transpose(0, 2, 1, 3, 4)
    return grid.reshape(tw.N_PATCHES, tw.PATCH * tw.PATCH, 3).astype(float)


def nearest_color(image: np.ndarray, patches: list[int]) -> str:
    """Colour name nearest to the brightest pixels (90th percentile per channel) of ``patches``."""
    top = np.percentile(patch_pixels(image)[patches].reshape(-1, 3), 90, axis=0)
    return tw.COLOR_NAMES[int(np.linalg.norm(PALETTE - top, axis=1).argmin())]


def test_vqav2_answers_agree_and_evidence_is_the_asked_object(tables):
    table = rows(tables["vqav2"])
    assert [r["question"].split()[1] for r in table[:4]] == ["color", "pattern", "color", "pattern"]
    for r in table:
        answers = {a["answer"] for a in r["answers"]}
        assert answers == {r["multiple_choice_answer"]} and len(r["answers"]) == 10
        image = np.asarray(Image.open(io.BytesIO(r["image"]["bytes"])))
        assert image.shape == (336, 336, 3) and r["evidence_patches"]
        if r["question"].startswith("What color"):
            assert nearest_color(image, r["evidence_patches"]) == r["multiple_choice_answer"]
        else:  # "What pattern is the red object?"
            assert nearest_color(image, r["evidence_patches"]) == r["question"].split()[4]
    by_image = {}
    for r in table:
        by_image.setdefault(r["image_id"], []).append(r)
    assert all(len(v) <= 2 and v[0]["image"] == v[-1]["image"] for v in by_image.values())


def test_pope_is_balanced_over_three_categories_and_absent_objects_have_no_evidence(tables):
    table = rows(tables["pope"])
    yes = [r for r in table if r["answer"] == "yes"]
    no = [r for r in table if r["answer"] == "no"]
    assert (len(yes), len(no)) == (21, 20)
    assert {r["category"] for r in table} == set(tw.POPE_CATEGORIES)
    assert all(r["evidence_patches"] == [] for r in no)
    for r in yes:
        image = np.asarray(Image.open(io.BytesIO(r["image"]["bytes"])))
        assert nearest_color(image, r["evidence_patches"]) == r["question"].split()[3]
    for r in no:  # the absent colour is nowhere in the image: no object patch is nearest to it
        image = np.asarray(Image.open(io.BytesIO(r["image"]["bytes"])))
        top = np.percentile(patch_pixels(image), 90, axis=1)  # (576, 3)
        objects = top.max(1) > 120  # background is dark grey (40-85 + noise)
        nearest = np.linalg.norm(top[objects, None] - PALETTE, axis=2).argmin(1)
        assert objects.sum() >= 25 and tw.COLOR_NAMES.index(r["question"].split()[3]) not in set(nearest)


def test_question_count_below_one_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="question count"):
        tw.write_tables(tmp_path, seed=0, n=0)


def test_fixture_cache_is_keyed_by_the_builders_code_and_parameters(tmp_path):
    import shutil

    import pipeline.fixtures as fixtures

    package = Path(fixtures.__file__).parent
    for name in fixtures.BUILDERS:
        shutil.copy(package / name, tmp_path / name)
    key = fixtures.fixture_key(tmp_path)
    assert key == fixtures.fixture_key(package) and fixtures.fixtures_root().name == key
    assert fixtures.fixture_key(tmp_path, (fixtures.TOYWORLD_SEED, fixtures.TOYWORLD_QUESTIONS + 1)) != key
    generator = tmp_path / "toyworld.py"
    generator.write_text(generator.read_text().replace("N_OBJECTS = (25, 45)", "N_OBJECTS = (25, 46)"))
    assert fixtures.fixture_key(tmp_path) != key


def test_no_question_is_answered_by_elimination():
    """The asked key is unique, the answer is worn by distractors too, the absent colour by none."""
    rng = np.random.default_rng(5)
    for _ in range(100):
        scene = tw.make_scene(rng)
        (color_a, pattern_a), (color_b, pattern_b) = scene.targets
        distractors = scene.obj >= 2
        assert (scene.pattern == pattern_a).sum() == len(scene.patches(tw.COLOR_TARGET))  # key of the colour question
        assert (scene.color == color_b).sum() == len(scene.patches(tw.PATTERN_TARGET))    # key of the pattern question
        assert color_a in scene.color[distractors] and pattern_b in scene.pattern[distractors]
        assert scene.absent_color not in scene.color[scene.obj >= 0]


@pytest.mark.slow
def test_ablated_tables_paint_over_exactly_the_asked_object(tables, tmp_path):
    ablated = tw.write_tables(tmp_path, seed=3, n=41, ablate=True)
    for name, path in tables.items():
        for row, gone in zip(rows(path), rows(ablated[name]), strict=True):
            assert {k: v for k, v in row.items() if k not in ("image", "image_id", "question_id", "image_source")} == \
                {k: v for k, v in gone.items() if k not in ("image", "image_id", "question_id", "image_source")}
            before = patch_pixels(np.asarray(Image.open(io.BytesIO(row["image"]["bytes"]))))
            after = patch_pixels(np.asarray(Image.open(io.BytesIO(gone["image"]["bytes"]))))
            changed = np.flatnonzero(np.abs(before - after).max(axis=(1, 2)) > 0)
            assert changed.tolist() == sorted(row["evidence_patches"]), row["question"]
            if changed.size:  # background now: dark grey, as no object is
                assert np.percentile(after[changed], 90) < 120
    assert len({r["image_id"] for r in rows(ablated["vqav2"])}) == 41
