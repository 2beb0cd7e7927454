"""Language identification with a bundled model (nothing is downloaded at run time).

The default backend is ``langid`` (Lui & Baldwin 2012; 97 languages, ISO 639-1 codes, its
naive-Bayes model ships inside the PyPI package). Identification is restricted to the
router's languages, so a text is never assigned to a language the router cannot route, and
a whole batch is scored with one matrix product.

The package's parts: :mod:`.base` (the ``Identifier`` protocol), :mod:`.text` (length buckets,
scripts), one module per backend (:mod:`.langid_backend`, :mod:`.fasttext_backend`,
:mod:`.ngram`), :mod:`.mixture` (combinations; ``make_identifier``) and :mod:`.decision`
(routes and fallbacks).
"""

from __future__ import annotations

from sprachbund_router.language_id.base import (  # noqa: F401
    Identifier,
    LanguageGuess,
    _normalise_rows,
)
from sprachbund_router.language_id.decision import (  # noqa: F401
    RoutingDecision,
    decide,
    decide_by_length,
)
from sprachbund_router.language_id.fasttext_backend import (  # noqa: F401
    FASTTEXT_ALIASES,
    FASTTEXT_LANGUAGES,
    FASTTEXT_TOP_K,
    FastTextIdentifier,
    _fasttext_model,
    fasttext_model_path,
)
from sprachbund_router.language_id.langid_backend import (  # noqa: F401
    LANGID_ALIASES,
    LangidIdentifier,
    _langid_model,
    _langid_tables,
)
from sprachbund_router.language_id.mixture import (  # noqa: F401
    COMPARED_IDENTIFIERS,
    PARTS,
    MixtureIdentifier,
    check_backend,
    make_identifier,
)
from sprachbund_router.language_id.ngram import (  # noqa: F401
    _MIX,
    NGRAM_FILE,
    NGRAM_ORDERS,
    NgramIdentifier,
    ngram_codes,
)
from sprachbund_router.language_id.text import (  # noqa: F401
    _SCRIPT_GROUPS,
    BUCKETS,
    MIXED_SCRIPT_MIN_LETTERS,
    _script,
    _script_counts,
    has_letters,
    length_bucket,
    majority_script_text,
    mixed_scripts,
    n_words,
)
