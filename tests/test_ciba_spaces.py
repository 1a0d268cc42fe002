"""The two feature spaces: CLIP (a tiny random CLIP the fixtures build) equals the official hook-based
loop and HF's own towers; LLaVA's shared space on the toy world finds the asked object and puts more
attribution on noun-phrase words than their share of words. Both: a question alone = in a batch."""
from __future__ import annotations

import polars as pl
import pytest
import torch
import torch.nn.functional as F

from icctp.ciba import BottleneckConfig
from pipeline.attribution.spaces import ClipSpace, side_seeds
from pipeline.attribution.stats import image_stats, text_stats

pytestmark = pytest.mark.slow
QUESTIONS = ["What color is the striped object?", "Is there a red object in the image?", "What pattern?"]


@pytest.fixture(scope="module")
def clip():
    from transformers import AutoTokenizer, CLIPModel

    from pipeline.fixtures import tiny_clip_path

    path = tiny_clip_path()
    model = CLIPModel.from_pretrained(path, attn_implementation="sdpa").double().eval()
    config = BottleneckConfig(n_noise=3, steps=4)
    return ClipSpace(model, AutoTokenizer.from_pretrained(path), config, config, image_layer=1, text_layer=2)


def pixels(n: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(1, 3, 336, 336, generator=gen, dtype=torch.float64) for _ in range(n)]


def official(space: ClipSpace, ids: torch.Tensor, image: torch.Tensor, side: str, seed: int) -> torch.Tensor:
    """M2IB's loop for one pair: a forward hook replaces block ``layer``'s output by the bottleneck, both
    towers recompute in full on the input expanded to the noise batch; read-out of the last forward."""
    model, config = space.model, space.image_config
    tower, layer = (model.text_model, space.text_layer) if side == "text" else (model.vision_model, space.image_layer)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    with torch.no_grad():
        hidden = tower(**({"input_ids": ids} if side == "text" else {"pixel_values": image}),
                       output_hidden_states=True).hidden_states[layer + 1]
    alpha = torch.nn.Parameter(torch.full(hidden.shape, config.alpha0, dtype=torch.float64))

    def hook(module, args, output):
        lamb = torch.sigmoid(alpha).expand(output.shape[0], output.shape[1], -1)
        mu, var = output * lamb, (1 - lamb) ** 2
        state["capacity"] = -0.5 * (1 + torch.log(var) - mu ** 2 - var)
        return mu + var.sqrt() * torch.randn(output.shape, generator=generator, dtype=output.dtype)

    handle = tower.encoder.layers[layer].register_forward_hook(hook)
    optimizer = torch.optim.Adam([alpha], lr=config.lr)
    try:
        for _ in range(config.steps):
            optimizer.zero_grad()
            text = model.get_text_features(ids.expand(config.n_noise, -1)).pooler_output
            vision = model.get_image_features(image.expand(config.n_noise, -1, -1, -1)).pooler_output
            fitting = F.cosine_similarity(text, vision, eps=1e-6).mean()
            (config.beta * state["capacity"].mean() - fitting).backward()
            optimizer.step()
    finally:
        handle.remove()
    return torch.nansum(state["capacity"].mean(0), -1).detach()


def test_clip_prefix_and_tail_equal_the_towers(clip):
    images = torch.cat(pixels(2))
    ids, lengths, _ = clip.tokenize(QUESTIONS[:2])
    mask = clip.text_mask(lengths, ids.shape[1])
    with torch.no_grad():
        ours = clip.vision_tail(clip.vision_prefix(images)[:, None])[:, 0]
        theirs = clip.model.get_image_features(images).pooler_output
        torch.testing.assert_close(ours, theirs.float(), rtol=1e-5, atol=1e-5)
        attention = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()
        ours = clip.text_tail(clip.text_prefix(ids, mask)[:, None], mask, clip.eot_positions(ids))[:, 0]
        theirs = clip.model.get_text_features(ids, attention_mask=attention).pooler_output
        torch.testing.assert_close(ours, theirs.float(), rtol=1e-5, atol=1e-5)


def test_clip_space_equals_the_official_loop(clip):
    question, image = QUESTIONS[0], pixels(1)[0]
    got = clip.attribute([question], [image], [123])[0]
    ids, _, offsets = clip.tokenize([question])
    image_ref = official(clip, ids, image, "image", side_seeds([123], 0)[0])
    torch.testing.assert_close(got.image, image_ref[1:].float(), rtol=1e-4, atol=1e-4)
    text_ref = official(clip, ids, image, "text", side_seeds([123], 1)[0])
    pieces = [i for i, (s, e) in enumerate(offsets[0]) if s < e]
    torch.testing.assert_close(got.text, text_ref[pieces].float(), rtol=1e-4, atol=1e-4)
    assert got.pieces == [offsets[0][i] for i in pieces] and len(got.image) == 576


def test_clip_question_alone_equals_in_a_batch(clip):
    images, seeds = pixels(3), [1, 2, 3]
    together = clip.attribute(QUESTIONS, images, seeds)
    for q, image, seed, batched in zip(QUESTIONS, images, seeds, together):
        alone = clip.attribute([q], [image], [seed])[0]
        torch.testing.assert_close(batched.image, alone.image, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(batched.text, alone.text, rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def toy_rows(tmp_path_factory):
    """The chain without Ray on 24 + 24 toy-world questions: prepare → nouns → preprocess → attribute."""
    import pyarrow as pa

    from pipeline.attribution.run import stage_kwargs
    from pipeline.manifest import BenchmarkSource, load_manifest
    from pipeline.run import resolve_model_path
    from pipeline.stages.attribute import AttributionStage
    from pipeline.stages.nouns import NounStage
    from pipeline.stages.prepare import prepare_benchmark
    from pipeline.stages.preprocess import PreprocessStage
    from pipeline.stages.shard_images import read_shard

    manifest = load_manifest("manifests/attribute_toyworld.yaml")
    model_path = resolve_model_path(manifest.model.path)
    tmp = tmp_path_factory.mktemp("toy")
    tables = []
    for name in ("vqav2", "pope"):
        prepare_benchmark(name, BenchmarkSource(data_files=f"fixture:toyworld_{name}"), tmp / name, 64, limit=24)
        tables += [read_shard(f) for f in sorted((tmp / name).glob("shard-*.parquet"))]
    batch = PreprocessStage(model_path, "float32")(NounStage()(pa.concat_tables(tables)))
    from pipeline.attribution.run import space_variants

    stage = AttributionStage(variants=space_variants(manifest), run_id="t", **stage_kwargs(manifest, model_path, "float32"))
    return stage, batch, pl.from_arrow(stage(batch))


def test_toy_world_image_attribution_finds_the_asked_object(toy_rows):
    _, _, rows = toy_rows
    assert rows["error"].null_count() == rows.height == 48
    stats = image_stats(rows, resamples=500)
    assert stats.n_evidence == 36  # every vqav2 question, the "yes" half of pope
    assert stats.evidence.low > 2.0  # attribution per evidence token > 2x the uniform share
    assert stats.top_on_evidence.value >= 0.5  # chance: at most 4 patches of 576
    kept = rows["kept"][0]
    assert {(k["variant"], k["budget"]) for k in kept} == {(m, b) for m in ("icctp", "cls", "random") for b in (64, 16)}


def test_toy_world_noun_phrase_words_carry_more_than_their_base_rate(toy_rows):
    _, _, rows = toy_rows
    stats = text_stats(rows, resamples=500)
    phrase = stats.classes["noun phrase"]
    assert phrase["enrichment"].low > 1.0
    assert phrase["share"].value > phrase["base"].value


def test_shared_space_question_alone_equals_in_a_batch(toy_rows):
    stage, batch, rows = toy_rows
    single = pl.from_arrow(stage(batch.slice(30, 1)))
    together = rows.row(30, named=True)
    alone = single.row(0, named=True)
    assert alone["sample_id"] == together["sample_id"]
    torch.testing.assert_close(torch.tensor(alone["image_attribution"]), torch.tensor(together["image_attribution"]),
                               rtol=1e-5, atol=1e-4)
    assert [w["attribution"] for w in alone["words"]] == pytest.approx([w["attribution"] for w in together["words"]],
                                                                        rel=1e-5)


def test_clip_space_through_the_stage(toy_rows, tmp_path):
    from pipeline.attribution.run import space_variants, stage_kwargs
    from pipeline.manifest import load_manifest
    from pipeline.run import resolve_model_path
    from pipeline.stages.attribute import AttributionStage

    text = open("manifests/attribute_toyworld.yaml").read().replace(
        "spaces: [shared]", "spaces: [shared, clip]\n  clip: {path: \"fixture:clip\", sigma: 1.0}")
    (tmp_path / "m.yaml").write_text(text)
    manifest = load_manifest(tmp_path / "m.yaml")
    model_path = resolve_model_path(manifest.model.path)
    _, batch, shared_rows = toy_rows
    stage = AttributionStage(variants=space_variants(manifest), run_id="t", **stage_kwargs(manifest, model_path, "float32"))
    rows = pl.from_arrow(stage(batch.slice(0, 3)))
    assert rows.group_by("variant").len().sort("variant").rows() == [("ciba-clip", 3), ("ciba-shared", 3)]
    clip = rows.filter(pl.col("space") == "clip")
    assert clip["error"].null_count() == 3 and all(len(a) == 576 for a in clip["image_attribution"])
    assert all(w["attribution"] is not None for words in clip["words"] for w in words if w["pos"] != "PUNCT")
    shared = rows.filter(pl.col("space") == "shared")["image_attribution"].to_list()
    torch.testing.assert_close(torch.tensor(shared), torch.tensor(shared_rows["image_attribution"].to_list()[:3]),
                               rtol=1e-5, atol=1e-4)
