"""Resolve a local directory or a Hub repository id to a local directory.

Hub access goes through ``huggingface_hub.snapshot_download``, so the usual cache,
``HF_HUB_OFFLINE=1``, ``HF_HOME`` and tokens all apply. When the Hub cannot be reached
(offline, or no network) a repository already in the cache still resolves; one that is not
cached raises :class:`~sprachbund_router.errors.HubAccessError` naming the repository and
what to do.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from sprachbund_router.errors import CheckpointError, HubAccessError

logger = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$|^[A-Za-z0-9][\w.-]*$")


def is_offline() -> bool:
    """Whether huggingface_hub is in offline mode: ``HF_HUB_OFFLINE`` as it is now (huggingface_hub
    itself reads the variable once, at import)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or bool(constants.HF_HUB_OFFLINE)


def looks_like_repo_id(name: str) -> bool:
    """``org/name`` or ``name`` with no path separators or leading dots."""
    return bool(_REPO_ID.match(name)) and not name.startswith((".", "~")) and ".." not in name


#: A revision: a 40-hex commit, a branch or tag name without path parts, or a pull-request ref.
_REVISION = re.compile(r"^(?:[0-9a-f]{40}|[A-Za-z0-9][A-Za-z0-9._-]{0,99}|refs/pr/[0-9]{1,9})$")


def check_revision(revision: str | None, what: str = "router") -> None:
    """Refuse a revision that could name a path (``/abs/ref``, ``../x``) before any Hub call.

    huggingface_hub resolves a branch name offline by reading ``refs/<revision>`` inside its
    cache, so a revision with path parts would make it read (and then load) files outside.

    Raises:
        CheckpointError: not a commit, branch, tag or ``refs/pr/N``.
    """
    if revision is None:
        return
    if (not isinstance(revision, str) or not _REVISION.match(revision) or ".." in revision
            or revision.endswith((".", ".lock"))):
        raise CheckpointError(f"{what} revision {revision!r} is not a commit (40 hex digits), a branch or tag name "
                              "without path parts, or refs/pr/N; refused")


def check_repo_id(name: str, what: str = "router") -> None:
    """Refuse a repository id that huggingface_hub would reject, as one line (no traceback).

    Raises:
        CheckpointError: the id is malformed (``org/na--me``, ``x.git``, over 96 characters...).
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not looks_like_repo_id(name):
        raise CheckpointError(f"{what} repo_id {name!r} is not a Hub repository id (org/name); refused")
    try:
        validate_repo_id(name)
    except HFValidationError as err:
        reason = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{what} repo_id {name!r} is not a valid Hub repository id: {reason}") from None


def resolve(
    path_or_repo_id: str | os.PathLike[str],
    *,
    revision: str | None = None,
    local_files_only: bool | None = None,
    cache_dir: str | Path | None = None,
    what: str = "router",
    hub_only: bool = False,
) -> Path:
    """Return a local directory for ``path_or_repo_id``.

    Args:
        path_or_repo_id: an existing directory, or a Hub repo id (``org/name``).
        revision: branch, tag or commit of the Hub repo (ignored for local paths).
        local_files_only: only use the local cache; defaults to ``HF_HUB_OFFLINE``.
        cache_dir: huggingface_hub cache directory (default: the usual one).
        what: what is being resolved, for error messages.
        hub_only: ``path_or_repo_id`` must be a Hub repo id (a repo id named inside a router
            config is never looked up as a local path).

    Raises:
        CheckpointError: a local path that does not exist.
        HubAccessError: the repo is not cached and cannot be downloaded.
    """
    name = os.fspath(path_or_repo_id)
    check_revision(revision, what)
    if hub_only:
        check_repo_id(name, what)
        if revision is None:
            logger.warning("%s %s is not pinned to a revision: whatever the repo holds now is loaded", what, name)
        return _snapshot(name, revision, local_files_only, cache_dir, what)
    local = Path(name).expanduser()
    if local.is_dir():
        return local
    if local.exists():
        raise CheckpointError(f"{what} path {local} is a file, expected a directory")
    if not looks_like_repo_id(name):
        raise CheckpointError(f"{what} directory {local} does not exist")
    check_repo_id(name, what)
    return _snapshot(name, revision, local_files_only, cache_dir, what)


def _snapshot(name: str, revision: str | None, local_files_only: bool | None, cache_dir: str | Path | None,
              what: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = is_offline() if local_files_only is None else local_files_only
    try:
        folder = snapshot_download(
            repo_id=name, revision=revision, cache_dir=cache_dir, local_files_only=offline
        )
    except (LocalEntryNotFoundError, FileNotFoundError) as err:
        how = (
            "HF_HUB_OFFLINE is set, so only the local cache is used"
            if offline
            else "the Hub could not be reached and the repo is not in the local cache"
        )
        raise HubAccessError(
            f"cannot load {what} {name!r}{f' at revision {revision!r}' if revision else ''}: {how}. "
            f"Download it once where the Hub is reachable (huggingface-cli download {name}), "
            f"copy the cache (HF_HOME), or pass a local directory path instead."
        ) from err
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise HubAccessError(f"{what} {name!r} was not found on the Hub: {err}") from err
    except (HfHubHTTPError, OSError) as err:
        raise HubAccessError(f"cannot download {what} {name!r}: {err}") from err
    logger.info("resolved %s %s -> %s", what, name, folder)
    return Path(folder)
