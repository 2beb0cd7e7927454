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

logger = logging.getLogger(__name__)


@dataclass
class AdapterSettings:
    """LoRA distillation settings (one adapter per sprachbund; the baselines get the same).

    Attributes:
        r / alpha / dropout: LoRA rank, scaling numerator and dropout.
        target_modules: linear layers that get LoRA matrices (BERT / XLM-R names).
        layers: transformer layers (0-based) that get them; None: every layer. Adapting only
            the top layers makes a step cheaper (nothing below them needs gradients).
        steps: optimizer updates per adapter (with ``budget = "data"``: per adapter on average).
        budget: how the sprachbund adapters share ``steps`` x number of sprachbunds updates:
            ``"equal"`` (each gets ``steps``) or ``"data"`` (in proportion to its training pairs,
            so every language's pairs are seen about as often as in the "all" adapter; random
            groups likewise by their own pairs).
        all_steps: updates of the all-languages baseline (None: ``steps`` x number of
            sprachbunds, the same compute as all sprachbund adapters together).
        batch_size / lr / warmup_ratio: optimisation.
        max_seq_length: token limit while training.
        max_pairs_per_language: training pairs per language (training split only).
        extra_pairs / max_extra_pairs: more training pairs per language from other sources
            (``"libreoffice"``), as for the vector space's maps (:func:`training.space.train_pairs`).
        report_pairs: held-out pairs per language with which a build scores the adapters
            against the base, its space and the baselines (0: no report); not a training setting.
        device: ``"cpu"``, ``"cuda"`` or None (cuda when available).
        bf16: bfloat16 autocast on a GPU.
        length_buckets: batches of texts of similar length (:func:`length_bucketed_batches`):
            less padding, the same examples per epoch.
        seed: data order and initialisation.
        residual: train the adapter *under* the router's space instead of into it: the
            router centres and maps its vectors like the base's (the adapter encoder gets the
            base's space), and the distillation targets are pulled back through that space
            (:meth:`sprachbund_router.space.VectorSpace.pull_back`), so a fresh adapter serves
            exactly the space's vectors and training only has to learn what the space misses.
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["query", "key", "value", "dense"])
    layers: list[int] | None = None
    steps: int = 200
    budget: str = "equal"
    all_steps: int | None = None
    batch_size: int = 32
    lr: float = 5e-4
    warmup_ratio: float = 0.1
    max_seq_length: int = 64
    max_pairs_per_language: int = 800
    extra_pairs: list[str] = field(default_factory=list)
    max_extra_pairs: int = 0
    report_pairs: int = 400
    device: str | None = None
    bf16: bool = True
    length_buckets: bool = True
    seed: int = 13
    residual: bool = False

    def __post_init__(self) -> None:
        from training.space import check_extra_sources

        for name in ("r", "steps", "batch_size", "max_seq_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"[adapters] {name} must be >= 1, got {getattr(self, name)}")
        if self.budget not in ("equal", "data"):
            raise ValueError(f"[adapters] budget must be 'equal' or 'data', got {self.budget!r}")
        if self.all_steps is not None and self.all_steps < 1:
            raise ValueError(f"[adapters] all_steps must be >= 1 (or left out), got {self.all_steps}")
        if self.layers is not None and (not self.layers or any(not isinstance(i, int) or i < 0 for i in self.layers)):
            raise ValueError(f"[adapters] layers must be a non-empty list of 0-based layer numbers, got {self.layers!r}")
        if not self.target_modules:
            raise ValueError("[adapters] target_modules is empty: the adapter would change nothing")
        check_extra_sources(self.extra_pairs, "[adapters] ")
        if self.max_extra_pairs < 0 or self.max_pairs_per_language < 0 or self.report_pairs < 0:
            raise ValueError("[adapters] max_pairs_per_language, max_extra_pairs and report_pairs must be >= 0")
        if self.extra_pairs and not self.max_extra_pairs:
            raise ValueError(f"[adapters] extra_pairs = {self.extra_pairs} has no effect with max_extra_pairs = 0; "
                             "set max_extra_pairs (pairs per language and source)")
        if self.device not in (None, "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"[adapters] device must be 'cpu', 'cuda' or left out, got {self.device!r}")


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator, drop_last: bool = True,
                            window: int = 50) -> list[list[int]]:
    """Batches of similar-length rows, in random order (transformers' ``LengthGroupedSampler``
    idea): shuffle, cut into windows of ``window`` batches, sort each window by length, cut it
    into batches and shuffle the batches. Every row is used once per epoch (the ragged tail
    dropped when ``drop_last``)."""
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    batches: list[list[int]] = []
    span = batch_size * window
    for start in range(0, len(order), span):
        chunk = order[start:start + span]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size].tolist() for i in range(0, len(chunk), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    ragged = [b for b in batches if len(b) < batch_size]
    if not drop_last and ragged:
        tail = [i for b in ragged for i in b]
        full += [tail[i:i + batch_size] for i in range(0, len(tail), batch_size)]
    return [full[i] for i in rng.permutation(len(full))]


def _length_sampler_class() -> type:
    """A sentence-transformers batch sampler over :func:`length_bucketed_batches` (built lazily:
    sentence-transformers is a training dependency here)."""
    from sentence_transformers.base.sampler import DefaultBatchSampler

    class LengthBucketBatchSampler(DefaultBatchSampler):
        """Batches of texts of similar length (characters of the ``sentence`` column)."""

        def __init__(self, dataset: Any, batch_size: int, drop_last: bool, valid_label_columns: Any = None,
                     generator: Any = None, seed: int = 0) -> None:
            super().__init__(dataset, batch_size=batch_size, drop_last=drop_last, valid_label_columns=valid_label_columns,
                             generator=generator, seed=seed)
            self.lengths = [len(t) for t in dataset["sentence"]]

        def __iter__(self):  # type: ignore[no-untyped-def]
            rng = np.random.default_rng(self.seed + getattr(self, "epoch", 0))
            yield from length_bucketed_batches(self.lengths, self.batch_size, rng, self.drop_last)

        def __len__(self) -> int:
            n = len(self.lengths)
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    return LengthBucketBatchSampler


def training_pairs(corpus: Path, languages: Sequence[str], max_pairs: int, anchor: str = "en", extra: Sequence[str] = (),
                   max_extra: int = 0) -> dict[str, list[tuple[str, str]]]:
    """Per language, its (xx, en) training pairs: the corpus's training split (at most
    ``max_pairs``) and, with ``extra``, up to ``max_extra`` pairs from those sources (built when
    missing), none of them a held-out text (:func:`training.space.train_pairs`)."""
    from training.space import ensure_extra_pairs, held_out_texts, train_pairs

    extra = list(extra) if max_extra else []
    banned = None
    if extra:
        ensure_extra_pairs(corpus, extra, [lang for lang in languages if lang != anchor])
        banned = held_out_texts(corpus, list(languages))
    return {lang: [r for rows in train_pairs(corpus, lang, max_pairs, extra, max_extra, banned).values() for r in rows]
            for lang in languages if lang != anchor}


def adapter_steps(settings: AdapterSettings, groups: Mapping[str, Sequence[str]], plans: Mapping[str, Sequence[str]],
                  pairs_of: Mapping[str, int]) -> dict[str, int]:
    """Optimizer updates per planned adapter: ``all`` gets ``all_steps`` (default: ``steps`` x
    number of sprachbunds); the others ``steps`` each (``budget = "equal"``) or their share of
    that total by training pairs (``"data"``; ``pairs_of``: pairs per language)."""
    total = settings.steps * len(groups)
    pool = sum(pairs_of.get(m, 0) for ms in groups.values() for m in ms) or 1
    out = {}
    for name, members in plans.items():
        if name == "all":
            out[name] = settings.all_steps or total
        elif settings.budget == "data":
            out[name] = max(1, round(total * sum(pairs_of.get(m, 0) for m in members) / pool))
        else:
            out[name] = settings.steps
    return out


def distillation_rows(
    corpus: Path, languages: Sequence[str], teacher_en: Callable[[list[str]], np.ndarray], max_pairs: int, anchor: str = "en",
    extra: Sequence[str] = (), max_extra: int = 0,
) -> tuple[list[str], np.ndarray]:
    """(texts, targets): each training pair (:func:`training_pairs`) gives (xx, teacher(en))
    and (en, teacher(en))."""
    return distillation_targets(training_pairs(corpus, languages, max_pairs, anchor, extra, max_extra), teacher_en)


def distillation_targets(
    pairs: Mapping[str, Sequence[tuple[str, str]]], teacher_en: Callable[[list[str]], np.ndarray],
    pull_back: Callable[[np.ndarray, list[str]], np.ndarray] | None = None, anchor: str = "en",
) -> tuple[list[str], np.ndarray]:
    """:func:`distillation_rows` of pairs already read (language -> its (xx, en) pairs).

    ``pull_back(targets, languages)``: turns each row's served target into what the adapter
    itself must output for a text of that language (residual adapters); English rows are of
    the ``anchor`` language."""
    texts: list[str] = []
    english: list[str] = []
    languages: list[str] = []
    for lang, rows in pairs.items():
        for xx, en in rows:
            texts += [xx, en]
            english += [en, en]
            languages += [lang, anchor]
    if not texts:
        return [], np.zeros((0, 0), np.float32)
    unique = list(dict.fromkeys(english))
    vecs = teacher_en(unique)
    row = {t: i for i, t in enumerate(unique)}
    targets = vecs[[row[e] for e in english]].astype(np.float32)
    if pull_back is not None:
        targets = pull_back(targets, languages).astype(np.float32)
    return texts, targets


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
    attr = "model" if isinstance(getattr(type(body), "auto_model", None), property) else "auto_model"  # sentence-transformers 6 / 3-5
    n_layers = int(getattr(body, attr).config.num_hidden_layers)
    beyond = sorted(i for i in settings.layers or [] if i >= n_layers)
    if beyond:
        raise ValueError(f"[adapters] layers {beyond} do not exist: the base {base_dir} runs {n_layers} layers (0-{n_layers - 1})")
    # peft wraps the transformers model inside sentence-transformers' Transformer module (peft's own
    # entry point: transformers' add_adapter insists on a newer peft than the registries carry)
    # the encoder's layers only (a pooler, unused by mean pooling, would get dead matrices)
    layers = r"\d+" if settings.layers is None else "(?:" + "|".join(str(i) for i in settings.layers) + ")"
    pattern = r".*(encoder\.layer|layers)\." + layers + r"\..*\b(" + "|".join(settings.target_modules) + r")$"
    lora = LoraConfig(task_type=TaskType.FEATURE_EXTRACTION, r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=pattern)
    setattr(body, attr, get_peft_model(getattr(body, attr), lora))
    dim = (getattr(body, "get_embedding_dimension", None) or body.get_word_embedding_dimension)()  # sentence-transformers 6 / 3-5
    model = SentenceTransformer(modules=[body, Pooling(dim, "mean"), Normalize()], device=device)
    data = Dataset.from_dict({"sentence": [text_prefix + t for t in texts], "label": targets.tolist()})
    work = out_dir.parent / f".{out_dir.name}-trainer"
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work), max_steps=steps, per_device_train_batch_size=settings.batch_size, learning_rate=settings.lr,
        warmup_steps=round(settings.warmup_ratio * steps), logging_steps=max(1, steps // 10), save_strategy="no", report_to=[],
        seed=settings.seed, bf16=settings.bf16 and device == "cuda", dataloader_drop_last=True, disable_tqdm=False,
        dataloader_pin_memory=device == "cuda",
        **({"batch_sampler": _length_sampler_class()} if settings.length_buckets else {}),
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
    base_dir: Path, pairs: Mapping[str, Sequence[tuple[str, str]]], plans: Mapping[str, Sequence[str]],
    teacher_en: Callable[[list[str]], np.ndarray],
    out_root: Path, settings: AdapterSettings, steps_of: Mapping[str, int] | None = None, text_prefix: str = "",
    teacher_key: str = "", pull_back: Callable[[np.ndarray, list[str]], np.ndarray] | None = None, anchor: str = "en",
) -> dict[str, dict[str, Any]]:
    """One adapter per plan (sprachbund or baseline group) under ``out_root/<name>``, trained on
    the ``pairs`` (language -> training pairs, :func:`training_pairs`) of its languages; resumes by
    skipping adapters whose metrics file says they finished with the same settings, languages
    and teacher (``teacher_key``: a fingerprint of the space they were distilled into).
    ``pull_back``: for residual adapters (:func:`distillation_targets`)."""
    out = {}
    base_layers = int(json.loads((Path(base_dir) / "config.json").read_text())["num_hidden_layers"])
    for name, members in plans.items():
        target = out_root / name
        done = target / "training_metrics.json"
        steps = (steps_of or {}).get(name, settings.steps)
        if done.is_file():
            old = json.loads(done.read_text())
            if (_training_part(old.get("settings", {})) == _training_part(asdict(settings)) and old.get("steps") == steps
                    and old.get("languages") == sorted(members) and old.get("teacher_key", "") == teacher_key
                    and old.get("base_layers") == base_layers):
                logger.info("adapter %s is already trained", name)
                out[name] = old
                continue
        texts, targets = distillation_targets({m: pairs[m] for m in members if m in pairs}, teacher_en, pull_back, anchor)
        if not texts:
            logger.warning("adapter %s: no training pairs for %s; skipped", name, members)
            continue
        metrics = train_adapter(base_dir, texts, targets, target, settings, steps, text_prefix)
        metrics["languages"] = sorted(members)
        metrics["teacher_key"] = teacher_key
        metrics["base_layers"] = base_layers  # the layers of the base it was trained on (the router's, truncated)
        done.write_text(json.dumps(metrics, indent=1) + "\n")
        out[name] = metrics
    return out


def _training_part(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that change what an adapter learns (not where it ran or how it is reported)."""
    out = {k: v for k, v in settings.items() if k not in ("device", "report_pairs")}
    if out.get("layers", None) is None:  # every layer, as adapters trained before the setting existed
        out.pop("layers", None)
    if out.get("budget", "equal") == "equal":  # likewise: equal steps, as before the setting existed
        out.pop("budget", None)
    if not out.get("residual"):  # likewise: distilled into the space, not under it
        out.pop("residual", None)
    if not out.get("extra_pairs"):  # likewise: no extra sources
        out.pop("extra_pairs", None)
        out.pop("max_extra_pairs", None)
    return out


def build_adapters(
    served: Any, base_dir: Path, corpus: Path, groups: Mapping[str, Sequence[str]], space: Any, settings: AdapterSettings,
    baselines: Sequence[str], work: Path, out: Path, text_prefix: str = "", seed: int = 13,
) -> dict[str, Any]:
    """The pipeline's adapter stage: one adapter per sprachbund (and the ``all`` / ``random``
    baselines at the same total steps) distilled into the router's ``space``, trained under
    ``work/adapters`` (resumable) and the sprachbund adapters copied to ``out/encoders/<name>``.

    ``served`` is the shared encoder as the router serves it (layer, prefix); the teacher of a
    pair is its English text through that encoder and the space, computed once and cached on
    disk (:class:`training.space.VectorCache`). Returns the training metrics per adapter and the
    random groups.
    """
    import hashlib
    import shutil

    from sprachbund_router.paths import cache_root
    from training.space import PROBE_TEXTS, VectorCache
    from training.sprachbunds import random_groups

    cache = VectorCache(lambda texts: served.encode(texts, batch_size=64), cache_root() / "vectors" / "base.npz")
    anchor = space.spec.anchor

    def teacher_en(texts: list[str]) -> np.ndarray:
        return space.serve(cache(texts), [anchor] * len(texts))

    def pull_back(targets: np.ndarray, languages: list[str]) -> np.ndarray:
        return space.pull_back(targets, languages)

    # what the adapters are distilled into, robust to float noise of a refitted space
    teacher_key = hashlib.sha256(np.round(teacher_en(list(PROBE_TEXTS)), 3).tobytes()).hexdigest()[:16]
    plans: dict[str, list[str]] = {g: sorted(ms) for g, ms in groups.items()}
    rnd = random_groups(groups, seed=seed) if "random" in baselines else {}
    if "all" in baselines:
        plans["all"] = sorted({m for ms in groups.values() for m in ms})
    plans.update(rnd)
    everyone = sorted({m for ms in plans.values() for m in ms})
    pairs = training_pairs(corpus, everyone, settings.max_pairs_per_language, anchor, settings.extra_pairs,
                           settings.max_extra_pairs)  # read once: every plan's languages are among them
    steps_of = adapter_steps(settings, groups, plans, {lang: len(rows) for lang, rows in pairs.items()})
    logger.info("adapter steps (%s budget): %s", settings.budget, steps_of)
    try:
        metrics = train_adapters(base_dir, pairs, plans, teacher_en, work / "adapters", settings, steps_of, text_prefix,
                                 teacher_key, pull_back if settings.residual else None, anchor or "en")
    finally:
        cache.save()
    for g in groups:
        if g not in metrics:
            raise RuntimeError(f"sprachbund {g} has no training pairs for an adapter; use sprachbund_models = 'base'")
        target = out / "encoders" / g
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for f in ("adapter_config.json", "adapter_model.safetensors", "training_metrics.json"):
            shutil.copyfile(work / "adapters" / g / f, target / f)
    return {"metrics": metrics, "random": rnd, "plans": plans}
