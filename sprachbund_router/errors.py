"""Exceptions raised by sprachbund-router.

Every error names the problem and, where there is one, the fix. They all derive from
:class:`SprachbundError` so callers can catch the package's errors in one place.
"""

from __future__ import annotations


class SprachbundError(Exception):
    """Base class of every error raised by sprachbund-router."""


class InvalidInputError(SprachbundError, ValueError):
    """A text passed to the router is not usable (None, not a string, empty...)."""


class UnknownLanguageError(SprachbundError, ValueError):
    """A language code is not known to the router (not in any sprachbund)."""


class CheckpointError(SprachbundError):
    """A router or encoder directory is missing, incomplete or corrupt."""


class HubAccessError(SprachbundError):
    """A Hub repository could not be resolved (offline, missing, or not cached)."""


class MissingHeadError(SprachbundError, KeyError):
    """The router has no task head for the requested task or sprachbund."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""
