"""Stage 5 of the pipeline (`training/pipeline.py`): continued masked-LM pre-training of the base encoder on one sprachbund's text.

Runs unchanged on one CPU, one GPU or several (``accelerate launch`` / ``torchrun``): the
loop is written against :class:`accelerate.Accelerator`. Languages are mixed by temperature
sampling (``p_l ∝ n_l ** alpha``, XLM-R's alpha = 0.3) so small languages are not drowned.
The batch for step ``s`` on process ``r`` is drawn from a generator seeded by ``(seed, s, r)``,
so a run resumed from a checkpoint sees exactly the data it would have seen.

Encoders such as multilingual-e5 ship without an MLM head; a fresh head (tied to the word
embeddings) is trained alone for ``head_warmup_steps`` before the encoder is unfrozen, so
its random gradients do not disturb the pre-trained weights. Logits are computed at masked
positions only (the 250k-word softmax is most of the cost otherwise).
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)


@dataclass
class MLMConfig:
    """Continued pre-training settings (defaults follow the paper's §5.2 where it gives them).

    Attributes:
        steps: optimizer updates.
        batch_size: sequences per device per micro-batch.
        grad_accum: micro-batches per update.
        seq_len: maximum tokens per sequence.
        lr: peak learning rate (paper: 3e-5, Adam, linear warm-up).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up updates.
        head_warmup_steps: first updates that train only the MLM head.
        alpha: temperature of language sampling.
        mlm_probability: share of tokens masked (80% [MASK], 10% random, 10% kept).
        train_embeddings: also update the (250k x hidden) word embeddings.
        checkpoint_every: save a resumable checkpoint every this many updates.
        eval_sentences: held-out sentences per language for the before/after MLM loss.
        mixed_precision: ``"no"``, ``"bf16"`` or ``"fp16"`` (GPU).
        seed: data and initialisation seed.
    """

    steps: int = 40_000
    batch_size: int = 32
    grad_accum: int = 1
    seq_len: int = 128
    lr: float = 3e-5
    warmup_steps: int = 1_000
    head_warmup_steps: int = 500
    weight_decay: float = 0.01
    alpha: float = 0.3
    mlm_probability: float = 0.15
    train_embeddings: bool = True
    checkpoint_every: int = 1_000
    eval_sentences: int = 20
    mixed_precision: str = "no"
    seed: int = 13


class MaskedLMHead(nn.Module):
    """BERT's MLM head: dense, GELU, LayerNorm, then the (tied) word-embedding decoder."""

    def __init__(self, hidden: int, vocab: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, states: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        return self.norm(nn.functional.gelu(self.dense(states))) @ embeddings.T + self.bias


class MaskedLM(nn.Module):
    """An encoder with an MLM head; the loss is computed at masked positions only."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        cfg = encoder.config
        self.head = MaskedLMHead(cfg.hidden_size, cfg.vocab_size, cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        where = labels != -100
        logits = self.head(states[where], self.encoder.get_input_embeddings().weight)
        target = labels[where]
        loss = nn.functional.cross_entropy(logits, target)
        correct = (logits.argmax(-1) == target).float().mean()
        return loss, correct


def sampling_probabilities(sizes: Mapping[str, int], alpha: float) -> dict[str, float]:
    """``p_l ∝ n_l ** alpha`` over languages with text."""
    weights = {lang: n**alpha for lang, n in sizes.items() if n > 0}
    total = sum(weights.values())
    return {lang: w / total for lang, w in weights.items()}


def sample_batch(texts: Mapping[str, Sequence[str]], probs: Mapping[str, float], n: int, rng: random.Random) -> list[str]:
    """``n`` sentences: a language by temperature sampling, then a sentence of it, each time."""
    langs = list(probs)
    weights = [probs[lang] for lang in langs]
    return [rng.choice(texts[lang]) for lang in rng.choices(langs, weights=weights, k=n)]


def _latest_checkpoint(ckpt_dir: Path) -> tuple[int, Path] | None:
    found = [(int(p.name.split("-")[1]), p) for p in ckpt_dir.glob("step-*") if (p / "done").exists()]
    return max(found) if found else None


def continue_pretraining(
    base_dir: str | Path,
    texts: Mapping[str, Sequence[str]],
    out_dir: str | Path,
    config: MLMConfig,
) -> dict:
    """Continue MLM pre-training of ``base_dir`` on ``texts`` (language -> sentences).

    Writes the encoder (safetensors + tokenizer) to ``out_dir``, resumable checkpoints to
    ``out_dir/../<name>.checkpoints``, and returns metrics: held-out MLM loss and masked-token
    accuracy before and after, losses along the way, and the sampling probabilities.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoModel, AutoTokenizer, DataCollatorForLanguageModeling

    from training.corpus import hash_texts

    out_dir = Path(out_dir)
    ckpt_dir = out_dir.with_name(out_dir.name + ".checkpoints")
    fingerprint = {"config": asdict(config), "base": str(base_dir),
                   "texts": {lang: [len(t), hash_texts(t)] for lang, t in sorted(texts.items())}}
    done = _already_trained(out_dir, ckpt_dir, fingerprint)
    if done is not None:
        return done
    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum, mixed_precision=config.mixed_precision)
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    if tokenizer.mask_token is None:
        raise ValueError(f"the tokenizer of {base_dir} has no mask token; it cannot be MLM-trained")
    encoder = AutoModel.from_pretrained(str(base_dir), use_safetensors=True, add_pooling_layer=False)
    model = MaskedLM(encoder)
    if not config.train_embeddings:
        encoder.get_input_embeddings().weight.requires_grad_(False)

    train, held = _split_held_out(texts, config)
    probs = sampling_probabilities({lang: len(s) for lang, s in train.items()}, config.alpha)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mlm_probability)

    def make_batch(sentences: list[str], gen_seed: int) -> dict[str, torch.Tensor]:
        enc = tokenizer(sentences, truncation=True, max_length=config.seq_len)
        torch.manual_seed(gen_seed)
        batch = collator([{"input_ids": ids} for ids in enc["input_ids"]])
        batch["attention_mask"] = (batch["input_ids"] != tokenizer.pad_token_id).long()
        return {k: v.to(accelerator.device) for k, v in batch.items()}

    body_params = [p for p in encoder.parameters() if p.requires_grad]
    optimizer, scheduler = _optimizer(model, body_params, config)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    @torch.no_grad()
    def evaluate() -> dict[str, float]:
        model.eval()
        losses, accs = [], []
        for start in range(0, len(held), config.batch_size):
            batch = make_batch(held[start : start + config.batch_size], config.seed + start)
            loss, acc = model(**batch)
            losses.append(loss.item())
            accs.append(acc.item())
        model.train()
        return {"mlm_loss": float(np.mean(losses)), "masked_accuracy": float(np.mean(accs))} if losses else {}

    start_step, before = _resume_or_start(accelerator, ckpt_dir, evaluate, fingerprint)
    unwrapped = accelerator.unwrap_model(model)
    losses = _train_steps(accelerator, model, optimizer, scheduler, body_params, make_batch, train, probs, config,
                          start_step, ckpt_dir, f"MLM {out_dir.name}")
    metrics = {
        "fingerprint": fingerprint, "config": asdict(config), "languages": sorted(train),
        "sampling_probabilities": {k: round(v, 4) for k, v in probs.items()},
        "train_sentences": {lang: len(s) for lang, s in train.items()}, "held_out_sentences": len(held),
        "before": before, "after": evaluate(),
        "loss_first_last": [losses[0], losses[-1]] if losses else [],
        "loss_curve": [round(float(np.mean(losses[i : i + 10])), 4) for i in range(0, len(losses), 10)],
        "devices": accelerator.num_processes, "device_type": accelerator.device.type,
        "nan_free": all(math.isfinite(x) for x in losses),
    }
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _save(unwrapped, tokenizer, metrics, out_dir, ckpt_dir)
    return metrics


def _resume_or_start(accelerator: Any, ckpt_dir: Path, evaluate: Any, fingerprint: dict) -> tuple[int, dict]:
    """(first step, held-out scores before training): from the latest checkpoint, or measured now."""
    latest = _latest_checkpoint(ckpt_dir)
    if latest:
        start_step, path = latest
        accelerator.load_state(str(path))
        logger.info("resuming from %s", path)
        return start_step, json.loads((ckpt_dir / "before.json").read_text())
    before = evaluate()
    if accelerator.is_main_process:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (ckpt_dir / "before.json").write_text(json.dumps(before))
        (ckpt_dir / "fingerprint.json").write_text(json.dumps(fingerprint))
    return 0, before


def _train_steps(accelerator: Any, model: Any, optimizer: Any, scheduler: Any, body_params: list[Any], make_batch: Any,
                 train: Mapping[str, list[str]], probs: Mapping[str, float], config: MLMConfig, start_step: int,
                 ckpt_dir: Path, label: str) -> list[float]:
    """The training steps from ``start_step`` (the body frozen for the first ``head_warmup_steps``),
    checkpointing every ``checkpoint_every``; returns the loss of each step."""
    from tqdm.auto import tqdm

    losses: list[float] = []
    model.train()
    bar = tqdm(range(start_step, config.steps), desc=label, disable=not accelerator.is_main_process)
    for step in bar:
        train_body = step >= config.head_warmup_steps
        for p in body_params:
            p.requires_grad_(train_body)
        for micro in range(config.grad_accum):
            gen = random.Random(f"{config.seed}-{step}-{micro}-{accelerator.process_index}")
            batch = make_batch(sample_batch(train, probs, config.batch_size, gen), gen.randrange(2**31))
            with accelerator.accumulate(model):
                loss, _ = model(**batch)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
        done = step + 1
        if done % config.checkpoint_every == 0 and done < config.steps:
            path = ckpt_dir / f"step-{done}"
            accelerator.save_state(str(path))
            if accelerator.is_main_process:
                (path / "done").write_text("")
    return losses


def _already_trained(out_dir: Path, ckpt_dir: Path, fingerprint: dict) -> dict | None:
    """The metrics of a finished run with this ``fingerprint``; else None, after removing a finished
    run or checkpoints made with other settings or text."""
    if (out_dir / "training_metrics.json").is_file():
        done = json.loads((out_dir / "training_metrics.json").read_text())
        if done.get("fingerprint") == fingerprint:
            logger.info("%s is already trained", out_dir)
            return done
        logger.info("%s was trained with other settings or text; training again", out_dir)
        shutil.rmtree(out_dir)
    if ckpt_dir.is_dir():
        fp = ckpt_dir / "fingerprint.json"
        if not fp.is_file() or json.loads(fp.read_text()) != fingerprint:
            logger.info("discarding checkpoints of another run in %s", ckpt_dir)
            shutil.rmtree(ckpt_dir)
    return None


def _split_held_out(texts: Mapping[str, Sequence[str]], config: MLMConfig) -> tuple[dict[str, list[str]], list[str]]:
    """Per language, up to ``eval_sentences`` (a fifth at most) held out for the before/after
    comparison; the rest trains."""
    rng = random.Random(config.seed)
    train: dict[str, list[str]] = {}
    held: list[str] = []
    for lang in sorted(texts):
        sents = list(dict.fromkeys(t for t in texts[lang] if t.strip()))
        rng.shuffle(sents)
        k = min(config.eval_sentences, len(sents) // 5)
        held += sents[:k]
        if sents[k:]:
            train[lang] = sents[k:]
    if not train:
        raise ValueError("no training text for continued pre-training")
    return train, held


def _optimizer(model: Any, body_params: list[Any], config: MLMConfig) -> tuple[Any, Any]:
    """AdamW (the MLM head at 10x the body's rate) and linear warm-up then decay."""
    optimizer = torch.optim.AdamW(
        [{"params": list(model.head.parameters()), "lr": config.lr * 10}, {"params": body_params, "lr": config.lr}],
        weight_decay=config.weight_decay,
    )

    def schedule(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        return max(0.0, (config.steps - step) / max(1, config.steps - config.warmup_steps))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _save(unwrapped: Any, tokenizer: Any, metrics: dict, out_dir: Path, ckpt_dir: Path) -> None:
    """The trained encoder (safetensors), tokenizer, MLM head and metrics; the checkpoints go."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    unwrapped.encoder.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    save_file({k: v.contiguous() for k, v in unwrapped.head.state_dict().items()}, str(out_dir / "mlm_head.safetensors"))
    (out_dir / "training_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    shutil.rmtree(ckpt_dir, ignore_errors=True)
