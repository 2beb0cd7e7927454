"""sprachbund-router: embed, classify and search text with the encoder of each language's
representation sprachbund (Fan et al., "Discovering Representation Sprachbund For
Multilingual Pre-Training")."""

from sprachbund_router.config import EncoderSpec, LanguageIdConfig, PoolingConfig, RouterConfig
from sprachbund_router.errors import (
    CheckpointError,
    HubAccessError,
    InvalidInputError,
    MissingHeadError,
    SprachbundError,
    UnknownLanguageError,
)
from sprachbund_router.index import VectorIndex
from sprachbund_router.router import Classification, RetrievalResult, Route, SprachbundRouter

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Classification",
    "EncoderSpec",
    "HubAccessError",
    "InvalidInputError",
    "LanguageIdConfig",
    "MissingHeadError",
    "PoolingConfig",
    "RetrievalResult",
    "Route",
    "RouterConfig",
    "SprachbundError",
    "SprachbundRouter",
    "UnknownLanguageError",
    "VectorIndex",
    "__version__",
]
