"""One specialised encoder per group of languages, trained on top of shared, cached lower layers.

The paper continues a whole model per sprachbund. On a 2-core CPU a model per group is
affordable only if the groups share what they do not change: here every model is the shared
base with its **top layers** (from :attr:`TopLayerSettings.first_layer` up to the pooled one)
trained for its group, so the lower layers' output of every text is computed once
(:class:`LowerStates`, cached on disk) and each model trains and runs only its own top layers.
At run time the same holds: the lower layers run once per batch for every sprachbund.

Objective (chosen on dev, see :mod:`benchmarks.sprachbund_encoders`): each training pair
(foreign text ``x``, English ``e``) teaches the student that the vector the router serves for
``x`` (its top layers, then the router's space: centring, subspace removal, the sprachbund's
map) should be the one the router serves for ``e`` through the *base* (the teacher: English is
the anchor of the one vector space, served by the base):

* ``mse``: squared distance between the served student vector and the teacher's;
* ``contrastive``: InfoNCE with the batch's other English messages as negatives.

Before the first step a student equals the base, so it serves exactly the space's vectors;
training only has to learn what the space misses, and early stopping on dev halves (the best
checkpoint by dev top-1, step 0 included) never serves worse than the space on dev.

Every model gets the same budget (steps, batch, schedule): the paper's equal per-model budget,
so each text still passes through one model of the same size.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import random
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sprachbund_router.encoder import SentenceEncoder
from sprachbund_router.pooling import pool
from sprachbund_router.tensors import load_tensors, save_tensors
from sprachbund_router.top_layers import layer_stack

logger = logging.getLogger(__name__)


@dataclass
class TopLayerSettings:
    """Training of one group's top layers (every model of a comparison gets the same).

    Attributes:
        first_layer: ``hidden_states`` index whose states are cached; the transformer layers
            from there up to the pooled (last) one are trained.
        steps / batch_size / lr / warmup_ratio / weight_decay: the budget and its schedule
            (linear warm-up, then linear decay to zero at ``steps``).
        loss: ``"mse"`` or ``"contrastive"``; temperature: InfoNCE's.
        eval_every: dev evaluation (and checkpoint) interval in steps.
        max_seq_length: tokens per text.
        seed: data order.
    """

    first_layer: int = 8
    steps: int = 300
    batch_size: int = 64
    lr: float = 3e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    loss: str = "contrastive"
    temperature: float = 0.05
    eval_every: int = 50
    max_seq_length: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in ("mse", "contrastive"):
            raise ValueError(f"loss must be 'mse' or 'contrastive', got {self.loss!r}")
        if self.steps < 0 or self.batch_size < 2 or self.eval_every < 1:
            raise ValueError("steps must be >= 0, batch_size >= 2 and eval_every >= 1")


# ------------------------------------------------------------------------------ the lower layers, once
def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class LowerStates:
    """The base's token states at ``hidden_states[first_layer]`` of every text, and its pooled
    last-layer vector, computed once and cached on disk in parts (an interrupted run keeps the
    parts it finished). The file names carry a fingerprint of the encoder and the settings."""

    PART = 4096

    def __init__(self, encoder: SentenceEncoder, first_layer: int, max_length: int, directory: Path | None) -> None:
        if encoder.text_prefix:
            raise ValueError("cache the lower layers of an encoder without a text prefix")
        self.encoder, self.first_layer, self.max_length = encoder, first_layer, max_length
        probe = encoder.encode(["The cat sleeps on the sofa. Die Katze schläft."])
        finger = hashlib.sha256(np.round(probe, 4).tobytes() + f"{first_layer}-{max_length}".encode()).hexdigest()[:12]
        self.directory = directory / f"lower-{finger}" if directory else None
        self.states: dict[str, np.ndarray] = {}  # key -> [tokens, dim] float16
        self.pooled: dict[str, np.ndarray] = {}  # key -> [dim] float32, unit (the base's served input)
        if self.directory and self.directory.is_dir():
            for part in sorted(self.directory.glob("part-*.safetensors")):
                self._read(part)

    def _read(self, part: Path) -> None:
        tensors, meta = load_tensors(part)
        keys, lengths = meta["keys"], tensors["lengths"].astype(int)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        for i, k in enumerate(keys):
            self.states[k] = tensors["states"][offsets[i]:offsets[i + 1]]
            self.pooled[k] = tensors["pooled"][i]

    def __contains__(self, text: str) -> bool:
        return _key(text) in self.states

    def ensure(self, texts: Sequence[str], batch_size: int = 64) -> None:
        """Encode the texts not cached yet (longest first) and write them as new parts."""
        todo = sorted({t for t in texts if t not in self}, key=len, reverse=True)
        if not todo:
            return
        started = time.perf_counter()
        model, layers = self.encoder.model, None
        for start in range(0, len(todo), self.PART):
            chunk = todo[start:start + self.PART]
            keys, states, lengths, pooled = [], [], [], []
            with torch.inference_mode():
                ids = self.encoder.tokenizer(chunk, truncation=True, max_length=self.max_length)["input_ids"]
                for b in range(0, len(chunk), batch_size):
                    batch = self.encoder._pad(ids[b:b + batch_size])
                    hidden = model(**batch, output_hidden_states=True).hidden_states
                    layers = len(hidden) - 1
                    mask = batch["attention_mask"]
                    last = torch.nn.functional.normalize(pool(hidden[layers], mask, "mean").float(), dim=-1)
                    for i, n in enumerate(mask.sum(1).tolist()):
                        keys.append(_key(chunk[b + i]))
                        states.append(hidden[self.first_layer][i, :n].to(torch.float16).numpy())
                        lengths.append(n)
                        pooled.append(last[i].numpy())
            tensors = {"states": np.concatenate(states), "lengths": np.array(lengths, np.int32),
                       "pooled": np.stack(pooled).astype(np.float32)}
            for k, s, p in zip(keys, states, pooled):
                self.states[k], self.pooled[k] = s, p
            if self.directory:
                self.directory.mkdir(parents=True, exist_ok=True)
                n = len(list(self.directory.glob("part-*.safetensors")))
                save_tensors(self.directory / f"part-{n:05d}.safetensors", tensors, {"keys": keys})
            done = start + len(chunk)
            logger.info("lower layers: %d / %d texts (%.0f texts/s)", done, len(todo), done / (time.perf_counter() - started))

    def batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded float32 states ``[b, t, dim]`` and the attention mask ``[b, t]``."""
        rows = [self.states[_key(t)] for t in texts]
        width = max(len(r) for r in rows)
        out = np.zeros((len(rows), width, rows[0].shape[1]), np.float32)
        mask = np.zeros((len(rows), width), np.int64)
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
            mask[i, :len(r)] = 1
        return torch.from_numpy(out), torch.from_numpy(mask)

    def base_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """The base's pooled last-layer unit vectors ``[n, dim]``."""
        return np.stack([self.pooled[_key(t)] for t in texts]) if texts else np.zeros((0, self.encoder.dim), np.float32)


# ------------------------------------------------------------------------------ the top layers
class TopLayers(torch.nn.Module):
    """The transformer layers from ``first_layer`` to the last, mean-pooled: a group's own part."""

    def __init__(self, encoder: SentenceEncoder, first_layer: int) -> None:
        super().__init__()
        self.layers = copy.deepcopy(layer_stack(encoder.model)[first_layer:])
        self.config = encoder.model.config
        self.first_layer = first_layer

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        attention = create_bidirectional_mask(config=self.config, inputs_embeds=states, attention_mask=mask)
        h = states
        for layer in self.layers:
            h = layer(h, attention_mask=attention)
            h = h[0] if isinstance(h, tuple) else h
        return torch.nn.functional.normalize(pool(h, mask, "mean"), dim=-1)

    def state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy().copy() for k, v in self.layers.state_dict().items()}

    def load(self, state: Mapping[str, np.ndarray]) -> None:
        self.layers.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})

    def encode(self, lower: LowerStates, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """Unit vectors ``[n, dim]`` of cached texts (batched by length)."""
        order = sorted(range(len(texts)), key=lambda i: len(lower.states[_key(texts[i])]))
        out = np.zeros((len(texts), self.config.hidden_size), np.float32)
        was = self.training
        self.eval()
        with torch.inference_mode():
            for b in range(0, len(order), batch_size):
                idx = order[b:b + batch_size]
                states, mask = lower.batch([texts[i] for i in idx])
                out[idx] = self(states, mask).numpy()
        self.train(was)
        return out


# ------------------------------------------------------------------------------ training
Served = Callable[[Any, Sequence[str]], Any]


def train_top_layers(
    name: str,
    encoder: SentenceEncoder,
    lower: LowerStates,
    pairs: Sequence[tuple[str, str, str]],
    teacher: Mapping[str, np.ndarray],
    serve: Served,
    dev_score: Callable[[TopLayers], float],
    settings: TopLayerSettings,
    out_dir: Path,
    key: str = "",
) -> dict[str, Any]:
    """Train one group's top layers; keep the best checkpoint by dev score (step 0 included).

    Args:
        name: the model's name (for logs and the record).
        pairs: (foreign text, its language, English text) training rows of the group's languages.
        teacher: English text -> the vector the router serves for it through the base (unit).
        serve: ``serve(vectors, languages)`` -> served vectors; applied to torch tensors while
            training (the router's space, differentiable).
        dev_score: the dev top-1 of a model (higher is better).
        key: what else the model depends on (the space and teacher it is trained towards).
        out_dir: where the trained layers (``top_layers.safetensors``), the curve and the cost
            are written; a finished model there with the same settings and data is reused, and
            an interrupted one resumes from its last checkpoint.

    Returns:
        The record: settings, dev curve, best step, seconds, steps/s, peak memory, pairs.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = hashlib.sha256(json.dumps([asdict(settings), sorted(pairs), key], ensure_ascii=False).encode()).hexdigest()[:16]
    record_path = out_dir / "record.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("fingerprint") == fingerprint and (out_dir / "top_layers.safetensors").is_file():
            logger.info("%s is already trained (best step %s)", name, record["best_step"])
            return record
    run = _Run(name, encoder, settings, out_dir, fingerprint)
    run.resume()
    rng = random.Random(f"{settings.seed}-{name}-{run.step}")
    if run.best is None:
        run.evaluate(dev_score, None)
    run.model.train()
    started = time.perf_counter() - run.seconds
    while run.step < settings.steps:
        batch = [pairs[rng.randrange(len(pairs))] for _ in range(settings.batch_size)]
        states, mask = lower.batch([x for x, _, _ in batch])
        loss = _loss(serve(run.model(states, mask), [lang for _, lang, _ in batch]), [e for _, _, e in batch], teacher, settings)
        run.update(loss)
        if run.step % settings.eval_every == 0 or run.step == settings.steps:
            run.seconds = time.perf_counter() - started
            run.evaluate(dev_score, float(loss.detach()))
            run.checkpoint()
    run.seconds = time.perf_counter() - started
    record = run.finish(pairs)
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    return record


class _Run:
    """One model's training state: its layers, optimiser and schedule, the dev curve and the best
    checkpoint, saved at every evaluation and resumed from there."""

    def __init__(self, name: str, encoder: SentenceEncoder, settings: TopLayerSettings, out_dir: Path, fingerprint: str) -> None:
        torch.manual_seed(settings.seed)
        self.name, self.settings, self.out_dir, self.fingerprint = name, settings, out_dir, fingerprint
        self.model = TopLayers(encoder, settings.first_layer)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        warm = max(1, int(settings.warmup_ratio * settings.steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min((s + 1) / warm, max(0.0, (settings.steps - s) / max(1, settings.steps - warm))))
        self.curve: list[dict[str, float]] = []
        self.best: tuple[float, int, dict[str, np.ndarray]] | None = None
        self.step, self.seconds = 0, 0.0
        self.ckpt = out_dir / "checkpoint.safetensors"

    def resume(self) -> None:
        """Continue from the last checkpoint of the same run (fingerprint), if any."""
        if not self.ckpt.is_file():
            return
        state, meta = load_tensors(self.ckpt)
        if meta.get("fingerprint") != self.fingerprint:
            return
        self.model.load({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
        self.optimizer.load_state_dict(torch.load(self.out_dir / "optimizer.pt", weights_only=True))
        self.step, self.curve, self.seconds = int(meta["step"]), list(meta["curve"]), float(meta["seconds"])
        self.best = (float(meta["best_score"]), int(meta["best_step"]),
                     {k[len("best."):]: v for k, v in state.items() if k.startswith("best.")})
        for _ in range(self.step):
            self.scheduler.step()
        logger.info("%s: resuming at step %d", self.name, self.step)

    def update(self, loss: torch.Tensor) -> None:
        """One optimiser step (gradients clipped at norm 1)."""
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1

    def evaluate(self, dev_score: Callable[[TopLayers], float], loss: float | None) -> None:
        """Score on dev, extend the curve, keep the best state (step 0 included)."""
        score = dev_score(self.model)
        point: dict[str, float] = {"step": self.step, "dev": round(100 * score, 2)}
        if loss is not None:
            point["loss"] = round(loss, 4)
        self.curve.append(point)
        if self.best is None or score > self.best[0]:
            self.best = (score, self.step, self.model.state())
        rate = f", {self.step / self.seconds:.2f} steps/s" if self.seconds else ""
        logger.info("%s: step %d%s, dev %.2f (best %.2f at %d)%s", self.name, self.step,
                    f", loss {loss:.4f}" if loss is not None else "", 100 * score, 100 * self.best[0], self.best[1], rate)

    def checkpoint(self) -> None:
        """Save the model, the best state and the optimiser (each replaced whole, the checkpoint last)."""
        assert self.best is not None
        meta = {"fingerprint": self.fingerprint, "step": self.step, "curve": self.curve, "seconds": self.seconds,
                "best_score": self.best[0], "best_step": self.best[1]}
        torch.save(self.optimizer.state_dict(), self.out_dir / "optimizer.tmp.pt")
        save_tensors(self.out_dir / "checkpoint.tmp.safetensors", {**{f"model.{k}": v for k, v in self.model.state().items()},
                                                                   **{f"best.{k}": v for k, v in self.best[2].items()}}, meta)
        (self.out_dir / "optimizer.tmp.pt").replace(self.out_dir / "optimizer.pt")
        (self.out_dir / "checkpoint.tmp.safetensors").replace(self.ckpt)

    def finish(self, pairs: Sequence[tuple[str, str, str]]) -> dict[str, Any]:
        """Write the best layers, drop the checkpoint, and return the record (cost included)."""
        assert self.best is not None
        s = self.settings
        save_tensors(self.out_dir / "top_layers.safetensors", self.best[2], {"first_layer": s.first_layer, "name": self.name})
        self.ckpt.unlink(missing_ok=True)
        (self.out_dir / "optimizer.pt").unlink(missing_ok=True)
        return {"name": self.name, "fingerprint": self.fingerprint, "settings": asdict(s), "pairs": len(pairs),
                "languages": sorted({lang for _, lang, _ in pairs}), "curve": self.curve, "best_step": self.best[1],
                "best_dev": round(100 * self.best[0], 2), "seconds": round(self.seconds, 1),
                "steps_per_second": round(s.steps / self.seconds, 3) if self.seconds and s.steps else None,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "device": "cpu", "torch_threads": torch.get_num_threads()}


def load_top_layers(encoder: SentenceEncoder, out_dir: Path) -> TopLayers:
    """A trained group's top layers (``top_layers.safetensors`` in ``out_dir``)."""
    state, meta = load_tensors(out_dir / "top_layers.safetensors")
    model = TopLayers(encoder, int(meta["first_layer"]))
    model.load(state)
    return model.eval()


def _loss(served: torch.Tensor, english: Sequence[str], teacher: Mapping[str, np.ndarray],
          settings: TopLayerSettings) -> torch.Tensor:
    if settings.loss == "mse":
        target = torch.from_numpy(np.stack([teacher[e] for e in english]))
        return ((served - target) ** 2).sum(-1).mean()
    unique = sorted(set(english))
    col = {e: i for i, e in enumerate(unique)}
    targets = torch.from_numpy(np.stack([teacher[e] for e in unique]))
    logits = served @ targets.T / settings.temperature
    return torch.nn.functional.cross_entropy(logits, torch.tensor([col[e] for e in english]))
