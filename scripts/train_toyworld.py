"""Train the toy-world LLaVA (``pipeline/fixtures/toyworld_model/``) from a seed, on one CPU thread.

    .venv/bin/python scripts/train_toyworld.py --out pipeline/fixtures/toyworld_model   # ~15 min

The model is a stock ``LlavaForConditionalGeneration``: a 2-layer CLIP tower (336 px, patch 14,
576 tokens, ``vision_feature_layer=-2``), a GELU projector and a 2-layer Llama (hidden 128, 2
heads), with a word-level tokenizer over the toy world's words. Its premise is partly constructed:

1. Stage V trains the tower and projector only: each object patch's projected token regresses onto
   the sum of the LM input embeddings of its colour word and pattern word (background patches onto
   the embedding of "background", weight 0.2), and the CLS attention row of the selected layer is
   pulled (KL) toward 0.9 of its mass spread evenly over object patches. The cross-modal alignment
   ICCTP assumes is thus *trained in*. The input embedding table is orthonormal and frozen.
2. Head 0 of the LM's first layer is *hand-set and frozen*: its query and key read the colour and
   pattern components of a token (plus a count of them) on low-RoPE-frequency dimensions, so a
   colour/pattern word of the question attends to the visual tokens carrying that word, or to
   itself when none does; its value/output writes the attended attribute components into residual
   directions orthogonal to every word embedding.
3. Stage L trains the rest of the LM (vision frozen) on the answer token and ``</s>``, with head 0
   of layer 2 supervised to attend from the answer position to the question's attribute word, and
   visual-token dropout as pruning does it: the asked object's patches plus a subset of the others, in
   raster order, positions contiguous; three phases, the last two drawing object patches 20×
   likelier (pruned inputs are object-dense, random subsets are not).

Stages run for fixed step counts (reproducible from ``--seed``); wall time is logged. Stage L draws
its scenes from a pool encoded once after stage V. After phases L1 and L2 a checkpoint is written
beside ``--out`` (``OUT.L1``, ``OUT.L2``); the final one goes to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.fixtures import toyworld as tw
from pipeline.model.vision import cls_attention_row

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
WORDS = (["USER", "ASSISTANT", ":", "?", ".", "What", "color", "pattern", "is", "the", "object", "Is", "there",
          "a", "in", "image", "Answer", "question", "using", "single", "word", "or", "phrase", "yes", "no",
          "background"] + list(tw.COLOR_NAMES) + list(tw.PATTERNS))
ATTRIBUTES = list(tw.COLOR_NAMES) + list(tw.PATTERNS)
# Renders "USER: <image>\n{text} ASSISTANT:" (images of a turn first, then its text).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ 'USER: ' }}{% else %}{{ ' ASSISTANT: ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>\\n' }}{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{% if message['role'] != 'user' %}{{ '</s>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ ' ASSISTANT:' }}{% endif %}"
)


def build_processor():
    """Word-level tokenizer (punctuation split off, offsets kept, ``<s>`` prepended) + CLIP image processor."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPImageProcessorPil, LlavaProcessor, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"}, padding_side="left", model_max_length=1024,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": tw.IMAGE_SIZE}, crop_size={"height": tw.IMAGE_SIZE, "width": tw.IMAGE_SIZE})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=tw.PATCH,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=CHAT_TEMPLATE)


def build_model(tokenizer, seed: int):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(seed)
    vision = CLIPVisionConfig(image_size=tw.IMAGE_SIZE, patch_size=tw.PATCH, hidden_size=64, intermediate_size=256,
                              num_hidden_layers=2, num_attention_heads=4, projection_dim=64)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
                       rope_parameters={"rope_type": "default", "rope_theta": 1e8})
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-2, vision_feature_select_strategy="default",
                         projector_hidden_act="gelu", image_seq_length=tw.N_PATCHES)
    model = LlavaForConditionalGeneration(config)
    with torch.no_grad():  # orthonormal word embeddings: distinct words, distinct directions
        table = model.get_input_embeddings().weight
        q, _ = torch.linalg.qr(torch.randn(table.shape[1], table.shape[0]))
        table.copy_(q.T.contiguous())
    model.get_input_embeddings().weight.requires_grad_(False)
    return model


class World:
    """Scenes, pixels, prompts and targets for training, from one seeded generator."""

    def __init__(self, model, processor, seed: int):
        self.rng = np.random.default_rng(seed)
        self.processor, self.tok = processor, processor.tokenizer
        self.table = model.get_input_embeddings().weight.detach()
        ids = self.tok.convert_tokens_to_ids
        self.color_ids, self.pattern_ids = torch.tensor(ids(list(tw.COLOR_NAMES))), torch.tensor(ids(list(tw.PATTERNS)))
        self.attribute_ids = set(ids(ATTRIBUTES))
        self.background = self.table[ids("background")]
        self.image_id = ids("<image>")

    def scenes(self, n: int):
        """``n`` fresh scenes and their (n, 3, 336, 336) pixel values."""
        scenes = [tw.make_scene(self.rng) for _ in range(n)]
        return scenes, pixel_values(self.processor.image_processor, [s.image for s in scenes])

    def patch_targets(self, scenes):
        """(B, 576, d) target token per patch and (B, 576) object mask."""
        color = torch.from_numpy(np.stack([s.color for s in scenes]))
        pattern = torch.from_numpy(np.stack([s.pattern for s in scenes]))
        fg = color >= 0
        target = self.table[self.color_ids[color.clamp(min=0)]] + self.table[self.pattern_ids[pattern.clamp(min=0)]]
        return torch.where(fg[..., None], target, self.background.expand_as(target)), fg

    def prompt(self, question: str, answer: str):
        """(ids of "<s> USER: <image> ... ASSISTANT: {answer} </s>", image position, attribute word position)."""
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question + tw.SHORT_ANSWER}]}]
        text = self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        ids = self.tok(f"{text} {answer}").input_ids + [self.tok.eos_token_id]
        image_pos = ids.index(self.image_id)
        attribute_pos = max(i for i, t in enumerate(ids[:-2]) if t in self.attribute_ids)
        return ids, image_pos, attribute_pos


def pixel_values(image_processor, images: list[np.ndarray]) -> torch.Tensor:
    """(N, 3, 336, 336) CLIP-normalised pixels of 336×336 uint8 images: what the processor computes
    (no resize or crop is needed at 336 px), without its per-image PIL round trip."""
    x = np.stack(images).astype(np.float32) / 255.0
    mean = np.asarray(image_processor.image_mean, np.float32)
    std = np.asarray(image_processor.image_std, np.float32)
    return torch.from_numpy(((x - mean) / std).transpose(0, 3, 1, 2).copy())


@torch.no_grad()
def scene_pool(model, world, size: int, chunk: int = 32):
    """``size`` scenes with their visual tokens (size, 576, d_llm), for stage L (the tower is frozen)."""
    scenes, tokens = [], []
    for start in range(0, size, chunk):
        batch, pixels = world.scenes(min(chunk, size - start))
        scenes += batch
        tokens.append(vision_forward(model, pixels)[0])
    return scenes, torch.cat(tokens)


def vision_forward(model, pixels):
    """Selected-layer features through the projector (B, 576, d_llm) and that layer's CLS row (B, 576)."""
    tower = model.model.vision_tower
    tower = getattr(tower, "vision_model", tower)
    layers = tower.encoder.layers
    selected = len(layers) + model.config.vision_feature_layer
    hidden = tower.pre_layrnorm(tower.embeddings(pixels))
    for layer in layers[:selected]:
        hidden = layer(hidden, None)
    cls_row = cls_attention_row(layers[selected].self_attn, layers[selected].layer_norm1(hidden))
    hidden = layers[selected](hidden, None)
    return model.model.multi_modal_projector(hidden[:, 1:]), cls_row


def cosine_lr(base: float, step: int, total: int, warmup: int) -> float:
    return base * min(1.0, (step + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / total)))


def train_vision(model, world, steps: int, batch: int, lr: float, log):
    params = list(model.model.vision_tower.parameters()) + list(model.model.multi_modal_projector.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    start = time.time()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(lr, step, steps, 20)
        scenes, pixels = world.scenes(batch)
        target, fg = world.patch_targets(scenes)
        tokens, cls_row = vision_forward(model, pixels)
        weight = torch.where(fg, 1.0, 0.2)
        feature_loss = (((tokens - target) ** 2).sum(-1) * weight).sum() / weight.sum()
        fgf = fg.float()
        goal = 0.9 * fgf / fgf.sum(1, keepdim=True) + 0.1 * (1 - fgf) / (1 - fgf).sum(1, keepdim=True)
        cls_loss = (goal * (goal.clamp_min(1e-12).log() - cls_row.clamp_min(1e-12).log())).sum(1).mean()
        loss = feature_loss + cls_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % 20 == 0:
            log(stage="V", step=step + 1, t=round(time.time() - start), feature=round(feature_loss.item(), 4),
                cls=round(cls_loss.item(), 4), cls_object_mass=round((cls_row * fgf).sum(1).mean().item(), 3))
    for p in params:
        p.requires_grad_(False)


def construct_lookup_head(model, attribute_ids: list[int], scale: float = 30.0, count_weight: float = 1.56,
                          out: float = 1.5):
    """Hand-set head 0 of LM layer 1 (see module docstring); returns (weight, index, value) to re-impose."""
    lm = model.model.language_model
    table = model.get_input_embeddings().weight.detach()
    d = table.shape[1]
    head_dim = d // lm.config.num_attention_heads
    attr = table[torch.tensor(attribute_ids)]                                   # (13, d)
    basis, _ = torch.linalg.qr(torch.cat([table.T, torch.randn(d, d)], 1))
    spare = basis[:, table.shape[0]:table.shape[0] + len(attr) + 1].T           # (14, d), orthogonal to all words
    dims = [head_dim // 4 + i for i in range(len(attr) + 1)]                    # low-RoPE-frequency dims of head 0
    sq, sv = math.sqrt(scale * math.sqrt(head_dim) / d), math.sqrt(out / math.sqrt(d))
    sa = lm.layers[0].self_attn
    with torch.no_grad():
        for w in (sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight):
            w[:head_dim] = 0
        sa.o_proj.weight[:, :head_dim] = 0
        for i in range(len(attr)):
            sa.q_proj.weight[dims[i]] = sq * attr[i]
            sa.k_proj.weight[dims[i]] = sq * attr[i]
            sa.v_proj.weight[i] = sv * attr[i]
            sa.o_proj.weight[:, i] = sv * spare[i]
        n = len(attr)
        sa.q_proj.weight[dims[n]] = sq * count_weight * attr.sum(0)
        sa.k_proj.weight[dims[n]] = sq * attr.sum(0)
        sa.v_proj.weight[n] = sv * attr.sum(0)
        sa.o_proj.weight[:, n] = sv * spare[n]
        lm.layers[0].input_layernorm.weight.fill_(1.0)
    return frozen_head(model)


def frozen_head(model):
    """(weight, index, value) of head 0 of LM layer 1 and that layer's input norm, as they are now:
    what ``train_language`` re-imposes after every step."""
    lm = model.model.language_model
    head_dim = lm.config.hidden_size // lm.config.num_attention_heads
    sa = lm.layers[0].self_attn
    frozen = [(sa.q_proj.weight, (slice(0, head_dim),)), (sa.k_proj.weight, (slice(0, head_dim),)),
              (sa.v_proj.weight, (slice(0, head_dim),)), (sa.o_proj.weight, (slice(None), slice(0, head_dim))),
              (lm.layers[0].input_layernorm.weight, (slice(None),))]
    return [(w, ix, w.detach()[ix].clone()) for w, ix in frozen]



def kept_subset(rng, scene, kind: str, n_keep: int, object_bias: bool) -> torch.Tensor:
    """The asked object's patches (``tw.evidence``) + ``n_keep - |evidence|`` others (object patches
    20× likelier if biased), sorted."""
    if n_keep >= tw.N_PATCHES:
        return torch.arange(tw.N_PATCHES)
    must = np.asarray(tw.evidence(scene, kind), dtype=np.int64)
    others = np.setdiff1d(np.arange(tw.N_PATCHES), must)
    p = None
    if object_bias:
        p = np.where(scene.color[others] >= 0, 20.0, 1.0)
        p /= p.sum()
    extra = rng.choice(others, n_keep - len(must), replace=False, p=p)
    return torch.from_numpy(np.sort(np.concatenate([must, extra])))


def train_language(model, world, pool, frozen, steps: int, lr: float, object_bias_p: float, full_p: float,
                   images: int, per_image: int, phase: str, log):
    lm = model.model.language_model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.01},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98))
    table = model.get_input_embeddings().weight
    eos, rng, start, hits = world.tok.eos_token_id, world.rng, time.time(), []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(lr, step, steps, 30)
        pick = rng.choice(len(pool[0]), images, replace=False)
        scenes, tokens = [pool[0][i] for i in pick], pool[1][torch.from_numpy(pick)]
        full = rng.random() < full_p
        n_keep = tw.N_PATCHES if full else int(round(math.exp(rng.uniform(math.log(8), math.log(400)))))
        biased = rng.random() < object_bias_p
        seqs, answer_pos, attr_pos, answers = [], [], [], []
        for b, scene in enumerate(scenes):
            for kind in rng.choice(tw.QUESTION_TYPES, per_image, replace=False):
                keep = kept_subset(rng, scene, kind, n_keep, biased)
                q, a = tw.question(scene, kind)
                ids, image_pos, attribute_pos = world.prompt(q, a)
                text = table[torch.tensor(ids)]
                seqs.append(torch.cat([text[:image_pos], tokens[b, keep], text[image_pos + 1:]]))
                shift = len(keep) - 1
                answer_pos.append(len(ids) - 3 + shift)   # ":" of "ASSISTANT:" predicts the answer
                attr_pos.append(attribute_pos + shift)
                answers.append(ids[-2])
        length = max(len(s) for s in seqs)
        pad = table[world.tok.pad_token_id]
        x = torch.stack([torch.cat([s, pad.expand(length - len(s), -1)]) for s in seqs])  # right pad (causal)
        ap, bi = torch.tensor(answer_pos), torch.arange(len(seqs))
        out = lm(inputs_embeds=x, output_attentions=True)
        hidden = out.last_hidden_state
        attn_loss = -torch.log(out.attentions[1][bi, 0, ap, torch.tensor(attr_pos)] + 1e-9).mean()
        target = torch.tensor(answers)
        logits_answer, logits_eos = model.lm_head(hidden[bi, ap]), model.lm_head(hidden[bi, ap + 1])
        answer_loss = F.cross_entropy(logits_answer, target)
        eos_loss = F.cross_entropy(logits_eos, torch.full_like(target, eos))
        loss = answer_loss + 0.2 * eos_loss + 0.5 * attn_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            for w, ix, value in frozen:
                w[ix] = value
        hits.append((logits_answer.argmax(-1) == target).float().mean().item())
        if (step + 1) % 25 == 0:
            log(stage=phase, step=step + 1, t=round(time.time() - start), n_keep=n_keep,
                answer=round(answer_loss.item(), 4), eos=round(eos_loss.item(), 4), attn=round(attn_loss.item(), 3),
                acc25=round(float(np.mean(hits[-25:])), 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vision-steps", type=int, default=320)
    parser.add_argument("--pool", type=int, default=768, help="scenes drawn once for stage L")
    parser.add_argument("--lm-steps", type=int, default=890, help="phase 1: random kept subsets, lr 3e-3")
    parser.add_argument("--finetune-steps", type=int, default=380, help="phases 2 and 3 each, lr 1e-3")
    parser.add_argument("--resume", type=Path, help="a checkpoint of this script: skip stage V (its tower, projector "
                        "and lookup head stay as they are) and continue stage L with fresh scenes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    log_rows = []

    def log(**row):
        log_rows.append(row)
        print(json.dumps(row), flush=True)

    times = {}
    start = time.time()
    if args.resume:
        from transformers import LlavaForConditionalGeneration

        processor = build_processor()  # the checkpoint's own, rebuilt (saved files stay byte-identical)
        model = LlavaForConditionalGeneration.from_pretrained(args.resume)
        for p in model.parameters():
            p.requires_grad_(False)
        for p in model.model.language_model.parameters():
            p.requires_grad_(True)
        model.model.language_model.embed_tokens.weight.requires_grad_(False)
        model.lm_head.weight.requires_grad_(True)
        world = World(model, processor, 2000 + args.seed)
    else:
        processor = build_processor()
        model = build_model(processor.tokenizer, args.seed)
        world = World(model, processor, 1000 + args.seed)
        train_vision(model, world, args.vision_steps, batch=12, lr=3e-3, log=log)
    times["vision_s"] = round(time.time() - start, 1)
    t = time.time()
    pool = scene_pool(model, world, args.pool)
    times["pool_s"] = round(time.time() - t, 1)
    model.model.language_model.config._attn_implementation = "eager"
    torch.manual_seed(args.seed + 1)
    frozen = frozen_head(model) if args.resume else \
        construct_lookup_head(model, processor.tokenizer.convert_tokens_to_ids(ATTRIBUTES))
    phases = [("L1", args.lm_steps, 3e-3, 0.0), ("L2", args.finetune_steps, 1e-3, 0.3),
              ("L3", args.finetune_steps, 1e-3, 0.6)]
    for phase, steps, lr, bias in [p for p in phases if p[1] > 0]:
        t = time.time()
        train_language(model, world, pool, frozen, steps, lr, bias, full_p=0.1, images=16, per_image=2, phase=phase, log=log)
        times[f"{phase}_s"] = round(time.time() - t, 1)
        times["total_s"] = round(time.time() - start, 1)
        summary = dict(seed=args.seed, resume=str(args.resume) if args.resume else None,
                       vision_steps=0 if args.resume else args.vision_steps, pool=args.pool, lm_steps=args.lm_steps,
                       finetune_steps=args.finetune_steps, phases_done=phase,
                       n_params=sum(p.numel() for p in model.parameters()), torch=torch.__version__, **times)
        record = dict(summary=summary, log=log_rows)
        if args.resume:
            record["base"] = json.loads((args.resume / "training.json").read_text())["summary"]
        save(model, processor, args.out if phase == "L3" else args.out.with_name(f"{args.out.name}.{phase}"), record)
    print(json.dumps(summary), flush=True)


def save(model, processor, out: Path, record: dict) -> None:
    """Checkpoint (safetensors, sdpa attention), processor with tokenizer and chat template, and
    ``training.json``; JSON files with sorted keys."""
    lm_config = model.model.language_model.config
    implementation, lm_config._attn_implementation = lm_config._attn_implementation, "sdpa"
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    lm_config._attn_implementation = implementation
    for path in sorted(out.glob("*.json")):
        data = json.loads(path.read_text())
        path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
