"""Heads from a user's own labels: logistic regression on the router's served vectors.

What users of multilingual sentence vectors reach for (the sentence-transformers + scikit-learn
recipe, SetFit's head) made multilingual the paper's way (§5.2): train on labelled text in one
language, usually English, and classify every language, because the served vectors of all
sprachbunds live in one space. The paper's three settings are offered:

* ``english``: every head is trained on the English texts of the data;
* ``pivot``: a sprachbund's head on the texts of its pivot language (where the data has no text
  in it: the data's language of that sprachbund with the highest summed cosine to its members,
  the pivot rule of §5.2 applied to the languages the data has, see :func:`data_pivots`);
* ``every``: a sprachbund's head on the texts of all its languages.

``per="sprachbund"`` trains one head per sprachbund (plus the fallback head ``"*"`` for texts
that fell back, trained on every selected text); ``per="all"`` one head for all. The inverse
regularisation strength is chosen by stratified cross-validation on the given data (log loss,
so the probabilities are calibrated as well as the data allows). Heads are plain numpy at run
time, so they run with every backend.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sprachbund_router.errors import InvalidInputError
from sprachbund_router.heads import FALLBACK_HEAD, ClassificationHead, HeadConfig
from sprachbund_router.space import unit

logger = logging.getLogger(__name__)

SETTINGS = ("english", "pivot", "every")
PER = ("sprachbund", "all")
#: Bias of a label that a head's training rows lack: it is never predicted (softmax gives it 0).
ABSENT_BIAS = -1e4
#: Inverse regularisation strengths tried by cross-validation.
CS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
#: A task name becomes a folder name: letters, digits, ``.``, ``_``, ``-`` and ``:``.
_TASK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


def check_task(task: str) -> str:
    """A task name usable as a folder name.

    Raises:
        InvalidInputError: empty, too long, or with characters other than letters, digits, ``._:-``.
    """
    if not isinstance(task, str) or not _TASK.match(task):
        raise InvalidInputError(f"task {task!r} must be 1-64 letters, digits, '.', '_', ':' or '-', starting with a letter "
                                "or digit")
    return task


def check_labels(labels: Sequence[Any], n: int) -> list[str]:
    """The labels as strings, one per text.

    Raises:
        InvalidInputError: another count than texts, a None, NaN, empty or non-scalar label, or a
            single class (naming the first bad position).
    """
    if isinstance(labels, (str, bytes)):
        raise InvalidInputError("labels must be a list with one label per text, got a single string")
    labels = list(labels)
    if len(labels) != n:
        raise InvalidInputError(f"{len(labels)} labels for {n} texts: give one label per text")
    out = []
    for i, label in enumerate(labels):
        if label is None or (isinstance(label, float) and math.isnan(label)):
            raise InvalidInputError(f"labels[{i}] is {label!r}: every text needs a label")
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, (str, int, np.integer)):
            raise InvalidInputError(f"labels[{i}] is {type(label).__name__}: a label is a string or an integer")
        text = str(label)
        if not text.strip():
            raise InvalidInputError(f"labels[{i}] is empty")
        out.append(text)
    if len(set(out)) < 2:
        raise InvalidInputError(f"the labels hold one class ({out[0]!r}): a classifier needs at least two")
    return out


@dataclass
class FittedHead:
    """One head and how its regularisation was chosen."""

    head: ClassificationHead
    c: float
    cv_log_loss: float | None
    rows: int


def fit_logistic(vectors: np.ndarray, labels: Sequence[str], label_set: Sequence[str], config: HeadConfig,
                 seed: int = 0) -> FittedHead:
    """Multinomial logistic regression with C chosen by stratified k-fold cross-validation (k up to 5,
    at most the rarest class's count; a class with one example: C = 1, no cross-validation)."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    counts = {label: labels.count(label) for label in set(labels)}
    folds = min(5, min(counts.values()))
    best_c, best_loss = 1.0, None
    if folds >= 2:  # the C path with warm starts, fold by fold; refitted on all rows at the best C
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # scikit-learn 1.8's notices about its 1.10 defaults (l1_ratios, attributes)
            warnings.simplefilter("ignore", FutureWarning)
            clf = LogisticRegressionCV(Cs=list(CS), cv=cv, scoring="neg_log_loss", max_iter=3000).fit(vectors, labels)
        best_c = float(clf.C_[0])
        scores = next(iter(clf.scores_.values()))  # [folds, Cs], the same for every class (multinomial)
        best_loss = -float(scores.mean(0)[list(CS).index(best_c)])
    else:
        clf = LogisticRegression(C=best_c, max_iter=3000).fit(vectors, labels)
    weight = np.zeros((len(label_set), vectors.shape[1]), dtype=np.float32)
    bias = np.full(len(label_set), ABSENT_BIAS, dtype=np.float32)  # labels without a training row stay impossible
    classes = list(clf.classes_)
    if len(classes) == 2:  # scikit-learn keeps one row for two classes: split it so the softmax is its sigmoid
        for sign, label in ((-0.5, classes[0]), (0.5, classes[1])):
            weight[label_set.index(label)] = sign * clf.coef_[0]
            bias[label_set.index(label)] = sign * clf.intercept_[0]
    else:
        for row, label in enumerate(classes):
            weight[label_set.index(label)] = clf.coef_[row]
            bias[label_set.index(label)] = clf.intercept_[row]
    config.metrics = {"c": best_c, "cv_folds": folds if folds >= 2 else 0,
                      "cv_log_loss": None if best_loss is None else round(best_loss, 4), "train_rows": len(labels),
                      "class_counts": dict(sorted(counts.items()))}
    return FittedHead(ClassificationHead(config, weight, bias), best_c, best_loss, len(labels))


def data_pivots(members: dict[str, Sequence[str]], pivots: dict[str, str], present: set[str],
                languages: Sequence[str], vectors: np.ndarray) -> dict[str, str]:
    """Sprachbund -> the pivot language its ``pivot`` head trains on, among the languages ``present``
    in the data: the router's pivot when the data has it, else the present member with the highest
    summed cosine to all members (the pivot rule, language vectors centred); none when the data has
    no language of the sprachbund."""
    pos = {lang: i for i, lang in enumerate(languages)}
    x = vectors - vectors.mean(axis=0, keepdims=True)
    x = unit(x)
    out = {}
    for group, langs in members.items():
        if pivots.get(group) in present:
            out[group] = pivots[group]
            continue
        have = [lang for lang in langs if lang in present and lang in pos]
        if have:
            idx = [pos[lang] for lang in langs if lang in pos]
            sums = {lang: float((x[idx] @ x[pos[lang]]).sum()) for lang in have}
            out[group] = max(have, key=lambda lang: (sums[lang], lang))
    return out


def training_rows(setting: str, per: str, languages: Sequence[str | None], groups: Sequence[str | None],
                  sprachbunds: Sequence[str], pivots: dict[str, str]) -> dict[str, list[int]]:
    """Head key (a sprachbund, or ``"*"``) -> the rows that train it, for ``setting`` and ``per``.

    A sprachbund with no rows of its own (no text of its languages, or of its pivot) is trained
    like the fallback head, on every selected row.

    Raises:
        InvalidInputError: a setting or per outside the choices, or no row selected at all.
    """
    if setting not in SETTINGS:
        raise InvalidInputError(f"setting must be one of {SETTINGS}, got {setting!r}")
    if per not in PER:
        raise InvalidInputError(f"per must be one of {PER}, got {per!r}")
    n = len(languages)
    if setting == "english":
        chosen = {key: [i for i in range(n) if languages[i] == "en"] for key in [*sprachbunds, FALLBACK_HEAD]}
    elif setting == "pivot":
        chosen = {g: [i for i in range(n) if languages[i] == pivots.get(g)] for g in sprachbunds}
        chosen[FALLBACK_HEAD] = sorted({i for rows in chosen.values() for i in rows})
    else:
        chosen = {g: [i for i in range(n) if groups[i] == g] for g in sprachbunds}
        chosen[FALLBACK_HEAD] = list(range(n))
    if per == "all":
        every = chosen[FALLBACK_HEAD]
        chosen = dict.fromkeys(chosen, every)
    if not chosen[FALLBACK_HEAD]:
        need = {"english": "English texts (language 'en')",
                "pivot": "texts in the pivot language of at least one sprachbund ("
                         + ", ".join(f"{g}: {p}" for g, p in sorted(pivots.items())) + ")",
                "every": "texts"}[setting]
        other = "setting='every'" if setting != "every" else "other texts"
        raise InvalidInputError(f"setting {setting!r} needs {need}; none were given. Pass languages= if the texts were "
                                f"identified wrongly, or use {other}")
    for key, rows in chosen.items():  # a sprachbund without texts of its own takes the fallback head's
        if not rows:
            logger.info("sprachbund %s has no %s texts of its own: its head is trained like the fallback head", key, setting)
            chosen[key] = chosen[FALLBACK_HEAD]
    return chosen
