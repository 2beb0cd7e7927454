"""Stage 7 of the pipeline (`training/pipeline.py`): task heads per sprachbund, in the paper's three fine-tuning settings (§5.2).

* ``english``: the head of every sprachbund is trained on English labelled data;
* ``pivot``: on the labelled data of the sprachbund's pivot language;
* ``every``: on the labelled data of every language of the sprachbund.

Heads are multinomial logistic regressions on the vectors the router serves for each text
(its sprachbund encoder's pooled vector, centred and mapped when the router has a vector
space; see :mod:`sprachbund_router.space`). The encoder stays frozen: head-only fine-tuning, so one encoder serves every task).
The task is emoji topic: the CLDR short name of an emoji (in each language) labelled with
its Unicode group. Emoji are split into train and test once, so test names are of emoji
never seen in training, in any language.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sprachbund_router.heads import FALLBACK_HEAD, ClassificationHead, HeadConfig
from training.corpus import read_emoji_topic

logger = logging.getLogger(__name__)

SETTINGS = ("english", "pivot", "every")
#: Key of the head used for texts that fell back (unknown language) and its directory name.
FALLBACK = FALLBACK_HEAD
FALLBACK_DIR = "fallback"
#: ``embed(group, lang, texts)``: the vectors served for texts of ``lang`` under sprachbund
#: ``group`` (``FALLBACK``: the path of texts that fell back).
Embed = Callable[[str, str, list[str]], np.ndarray]


@dataclass
class HeadTrainingConfig:
    """Task-head settings.

    Attributes:
        task: labelled task (``emoji-topic``).
        settings: fine-tuning settings to train (subset of english, pivot, every).
        default_setting: the setting served under the plain task name.
        test_fraction: share of emoji held out for testing.
        max_per_language: cap on training names per language (None = all).
        max_test_per_language: cap on test names per language (None = all).
        c: inverse regularisation strength of the logistic regression.
        seed: split seed.
    """

    task: str = "emoji-topic"
    settings: list[str] = field(default_factory=lambda: list(SETTINGS))
    default_setting: str = "every"
    test_fraction: float = 0.3
    max_per_language: int | None = None
    max_test_per_language: int | None = None
    c: float = 10.0
    seed: int = 13


def split_items(items: Sequence[str], test_fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """Split item ids (emoji) into train and test sets, reproducibly."""
    ordered = sorted(items)
    random.Random(seed).shuffle(ordered)
    n_test = round(len(ordered) * test_fraction)
    return set(ordered[n_test:]), set(ordered[:n_test])


def fit_head(vectors: np.ndarray, labels: Sequence[str], label_set: Sequence[str], c: float, config: HeadConfig) -> ClassificationHead:
    """Multinomial logistic regression -> :class:`ClassificationHead` with rows in ``label_set`` order."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=2000)
    clf.fit(vectors, labels)
    weight = np.zeros((len(label_set), vectors.shape[1]), dtype=np.float32)
    bias = np.full(len(label_set), -1e4, dtype=np.float32)  # classes never seen in training
    for row, label in enumerate(clf.classes_):
        weight[label_set.index(label)] = clf.coef_[row]
        bias[label_set.index(label)] = clf.intercept_[row]
    return ClassificationHead(config, weight, bias)


def train_heads(
    corpus_dir: Path,
    groups: Mapping[str, Sequence[str]],
    pivots: Mapping[str, str],
    embed: Embed,
    out_dir: Path,
    config: HeadTrainingConfig,
) -> dict[str, dict[str, str]]:
    """Train, evaluate and save heads; returns the router config's ``heads`` entry.

    ``embed(group, lang, texts)`` gives the vectors a head of ``group`` sees for texts of
    ``lang``; a group named ``"*"`` (all languages, on the fallback path) gives the head for
    texts that fell back. Heads land in
    ``out_dir/<task>/<setting>/<sprachbund>``; task names are ``<task>:<setting>`` plus the
    plain ``<task>`` for ``config.default_setting``.
    """
    data = {lang: read_emoji_topic(corpus_dir, lang) for g in groups.values() for lang in g}
    data["en"] = read_emoji_topic(corpus_dir, "en")
    data = {lang: rows for lang, rows in data.items() if rows}
    if "en" not in data:
        raise ValueError(f"no English {config.task} data in {corpus_dir}; rebuild the corpus")
    label_set = sorted({label for rows in data.values() for _, _, label in rows})
    train_ids, test_ids = split_items({e for rows in data.values() for e, _, _ in rows}, config.test_fraction, config.seed)
    rng = random.Random(config.seed)

    def rows_of(lang: str, ids: set[str], cap: int | None = None) -> list[tuple[str, str]]:
        rows = [(name, label) for e, name, label in data.get(lang, []) if e in ids]
        if cap and len(rows) > cap:
            rows = rng.sample(rows, cap)
        return rows

    heads: dict[str, dict[str, str]] = {}
    samples: dict[tuple[str, str], list[tuple[str, str]]] = {}
    cache: dict[tuple[str, str, str], tuple[np.ndarray, list[str]]] = {}
    for group, members in groups.items():

        def encoded(lang: str, split: str, _group: str = group) -> tuple[np.ndarray, list[str]]:
            key = (_group, lang, split)
            if key not in cache:
                if (lang, split) not in samples:  # the same sample for every group
                    samples[lang, split] = rows_of(lang, train_ids if split == "train" else test_ids,
                                                   config.max_per_language if split == "train" else config.max_test_per_language)
                rows = samples[lang, split]
                vecs = embed(_group, lang, [r[0] for r in rows]) if rows else np.zeros((0, 0), np.float32)
                cache[key] = (vecs, [r[1] for r in rows])
            return cache[key]

        test_langs = [lang for lang in members if lang in data]
        for setting in config.settings:
            train_langs = {"english": ["en"], "pivot": [pivots[group]], "every": test_langs}[setting]
            train_langs = [lang for lang in train_langs if lang in data]
            if not train_langs:
                logger.warning("%s/%s: no labelled data for %s; head skipped", group, setting, setting)
                continue
            parts = [encoded(lang, "train") for lang in train_langs]
            y = [label for _, part in parts for label in part]
            if len(set(y)) < 2:
                continue
            x = np.concatenate([v for v, labels in parts if labels])
            cfg = HeadConfig(config.task, label_set, setting, train_langs)
            head = fit_head(x, y, label_set, config.c, cfg)
            for lang in test_langs:
                tx, ty = encoded(lang, "test")
                if len(ty):
                    pred = np.array(label_set)[head.predict_proba(tx).argmax(1)]
                    cfg.metrics[lang] = round(float((pred == np.array(ty)).mean()), 4)
            cfg.metrics["mean"] = round(float(np.mean([v for k, v in cfg.metrics.items()])), 4) if cfg.metrics else None
            rel = Path(config.task) / setting / (FALLBACK_DIR if group == FALLBACK else group)
            head.save(out_dir / rel)
            heads.setdefault(f"{config.task}:{setting}", {})[group] = str(Path(out_dir.name) / rel)
            logger.info("head %s/%s trained on %s: mean test accuracy %s", group, setting, train_langs, cfg.metrics["mean"])
    if f"{config.task}:{config.default_setting}" in heads:
        heads[config.task] = dict(heads[f"{config.task}:{config.default_setting}"])
    return heads
