"""Sprachbund adapters: LoRA on the frozen shared base, distilled into the router's shared space.

Multilingual knowledge distillation (Reimers & Gurevych 2020) with sentence-transformers'
training stack (``SentenceTransformerTrainer`` + ``MSELoss``) and ``peft``'s LoRA: for each
training pair of a sprachbund's languages, the student (base + the sprachbund's adapter,
mean pooling, normalised) learns ``student(xx) ≈ teacher(en)`` and ``student(en) ≈ teacher(en)``,
where the teacher is what the router serves for the English text (the base encoder through
the vector space: centred, in the anchor's space). Every adapter therefore lands in one space
with the shared encoder, and vectors of different sprachbunds stay comparable.

The adapter directory is what peft writes (``adapter_config.json``, ``adapter_model.safetensors``),
loaded by the runtime without peft (:mod:`sprachbund_router.adapters`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.corpus import read_pairs

logger = logging.getLogger(__name__)


@dataclass
class AdapterSettings:
    """LoRA distillation settings (one adapter per sprachbund; the baselines get the same).

    Attributes:
        r / alpha / dropout: LoRA rank, scaling numerator and dropout.
        target_modules: linear layers that get LoRA matrices (BERT / XLM-R names).
        steps: optimizer updates per adapter.
        all_steps: updates of the all-languages baseline (None: ``steps`` x number of
            sprachbunds, the same compute as all sprachbund adapters together).
        batch_size / lr / warmup_ratio: optimisation.
        max_seq_length: token limit while training.
        max_pairs_per_language: training pairs per language (training split only).
        baselines: ``all`` (one adapter for every language) and ``random`` (random groups of
            the sprachbunds' sizes).
        device: ``"cpu"``, ``"cuda"`` or None (cuda when available).
        bf16: bfloat16 autocast on a GPU.
        seed: data order and initialisation.
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["query", "key", "value", "dense"])
    steps: int = 200
    all_steps: int | None = None
    batch_size: int = 32
    lr: float = 5e-4
    warmup_ratio: float = 0.1
    max_seq_length: int = 64
    max_pairs_per_language: int = 800
    baselines: list[str] = field(default_factory=lambda: ["all", "random"])
    device: str | None = None
    bf16: bool = True
    seed: int = 13


def distillation_rows(
    corpus: Path, languages: Sequence[str], teacher_en: Callable[[list[str]], np.ndarray], max_pairs: int, anchor: str = "en",
) -> tuple[list[str], np.ndarray]:
    """(texts, targets): each training pair gives (xx, teacher(en)) and (en, teacher(en))."""
    texts: list[str] = []
    english: list[str] = []
    for lang in languages:
        if lang == anchor:
            continue
        for xx, en in read_pairs(corpus, lang, "train")[:max_pairs]:
            texts += [xx, en]
            english += [en, en]
    if not texts:
        return [], np.zeros((0, 0), np.float32)
    unique = list(dict.fromkeys(english))
    vecs = teacher_en(unique)
    row = {t: i for i, t in enumerate(unique)}
    return texts, vecs[[row[e] for e in english]].astype(np.float32)


def train_adapter(
    base_dir: Path, texts: Sequence[str], targets: np.ndarray, out_dir: Path, settings: AdapterSettings, steps: int,
    text_prefix: str = "",
) -> dict[str, Any]:
    """Train one LoRA adapter by MSE distillation and save it (PEFT format) to ``out_dir``."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MSELoss
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(settings.seed)
    body = Transformer(str(base_dir), max_seq_length=settings.max_seq_length)
    # peft wraps the transformers model inside sentence-transformers' Transformer module (peft's own
    # entry point: transformers' add_adapter insists on a newer peft than the registries carry)
    # the encoder's layers only (a pooler, unused by mean pooling, would get dead matrices)
    pattern = r".*(encoder\.layer|layers)\.\d+\..*\b(" + "|".join(settings.target_modules) + r")$"
    lora = LoraConfig(task_type=TaskType.FEATURE_EXTRACTION, r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=pattern)
    attr = "model" if isinstance(getattr(type(body), "auto_model", None), property) else "auto_model"  # sentence-transformers 6 / 3-5
    setattr(body, attr, get_peft_model(getattr(body, attr), lora))
    model = SentenceTransformer(modules=[body, Pooling(body.get_word_embedding_dimension(), "mean"), Normalize()], device=device)
    data = Dataset.from_dict({"sentence": [text_prefix + t for t in texts], "label": targets.tolist()})
    work = out_dir.parent / f".{out_dir.name}-trainer"
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work), max_steps=steps, per_device_train_batch_size=settings.batch_size, learning_rate=settings.lr,
        warmup_ratio=settings.warmup_ratio, logging_steps=max(1, steps // 10), save_strategy="no", report_to=[],
        seed=settings.seed, bf16=settings.bf16 and device == "cuda", dataloader_drop_last=True, disable_tqdm=False,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=MSELoss(model))
    started = time.time()
    result = trainer.train()
    seconds = time.time() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    model[0].auto_model.save_pretrained(str(out_dir))  # adapter_config.json + adapter_model.safetensors only
    history = [h for h in trainer.state.log_history if "loss" in h]
    metrics = {"steps": steps, "examples": len(texts), "seconds": round(seconds, 1), "steps_per_second": round(steps / seconds, 3),
               "device": device, "train_loss": round(float(result.training_loss), 6),
               "loss_curve": [(h["step"], round(h["loss"], 6)) for h in history], "settings": asdict(settings),
               "adapter_bytes": (out_dir / "adapter_model.safetensors").stat().st_size}
    (out_dir / "training_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    logger.info("adapter %s: %d steps in %.0fs (%.2f steps/s on %s), loss %.5f", out_dir.name, steps, seconds,
                steps / seconds, device, metrics["train_loss"])
    return metrics


def train_adapters(
    base_dir: Path, corpus: Path, plans: Mapping[str, Sequence[str]], teacher_en: Callable[[list[str]], np.ndarray],
    out_root: Path, settings: AdapterSettings, steps_of: Mapping[str, int] | None = None, text_prefix: str = "",
) -> dict[str, dict[str, Any]]:
    """One adapter per plan (sprachbund or baseline group) under ``out_root/<name>``; resumes by
    skipping adapters whose metrics file says they finished with the same settings."""
    out = {}
    for name, members in plans.items():
        target = out_root / name
        done = target / "training_metrics.json"
        steps = (steps_of or {}).get(name, settings.steps)
        if done.is_file():
            old = json.loads(done.read_text())
            if old.get("settings") == asdict(settings) and old.get("steps") == steps and old.get("languages") == sorted(members):
                out[name] = old
                continue
        texts, targets = distillation_rows(corpus, members, teacher_en, settings.max_pairs_per_language)
        if not texts:
            logger.warning("adapter %s: no training pairs for %s; skipped", name, members)
            continue
        metrics = train_adapter(base_dir, texts, targets, target, settings, steps, text_prefix)
        metrics["languages"] = sorted(members)
        done.write_text(json.dumps(metrics, indent=1) + "\n")
        out[name] = metrics
    return out
