"""Placing files: folders written beside their target and moved into place only when complete,
and hard links where the filesystem allows (copies elsewhere).

An interrupted export or index build then leaves no half-written folder under the target name
(only a ``.NAME.partial-*`` folder, removed on errors). Encoders are hundreds of megabytes; routers,
Hub dry runs and cache layouts share them by hard link so building one costs no disk space.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from sprachbund_router.errors import CheckpointError


def is_new_directory(path: Path) -> bool:
    """Whether ``path`` is free to become a folder: missing, or an empty directory."""
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


class StagedDirectory:
    """A temporary folder beside ``target``; :meth:`commit` renames it to ``target``.

    Args:
        target: the folder to create (missing or empty).
        what: what the folder holds, for the error message.
        error: the exception raised when ``target`` is not free.
    """

    def __init__(self, target: str | Path, what: str, error: type[Exception] = CheckpointError) -> None:
        self.target = Path(target)
        if self.target.is_symlink():
            raise error(f"{self.target} is a symbolic link; choose a real directory for the {what} (links are never written through)")
        if not is_new_directory(self.target):
            raise error(f"{self.target} exists and is not empty; choose a new directory for the {what}")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.lock = self.target.parent / f".{self.target.name}.lock"
        try:  # one writer per target: a second run is refused before it does any work
            os.close(os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise error(f"another run is writing {self.target} ({self.lock} exists); wait for it, or remove the lock "
                        "file if that run died") from None
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.partial-", dir=self.target.parent))
        self._error, self._what = error, what

    def commit(self) -> Path:
        """Move the finished folder into place."""
        try:
            if self.target.exists():
                if not is_new_directory(self.target):
                    raise self._error(f"{self.target} was filled by someone else meanwhile; the {self._what} is left in {self.path}")
                self.target.rmdir()
            _umask_modes(self.path)  # mkdtemp made it 0700: the folder gets the modes any new folder would
            self.path.rename(self.target)
        finally:
            self.lock.unlink(missing_ok=True)
        return self.target

    def abort(self) -> None:
        """Remove the partial folder (and the lock)."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.lock.unlink(missing_ok=True)


def replace_directory(staged: Path, target: Path) -> Path:
    """Move the finished folder ``staged`` to ``target``, replacing a folder already there whole
    (it is renamed aside first and removed only once the new one is in place)."""
    if target.is_symlink():
        raise CheckpointError(f"{target} is a symbolic link; refusing to write through it")
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        old.rmdir()
        target.rename(old)
    try:
        _umask_modes(staged)
        staged.rename(target)
    except OSError:
        if old is not None:
            old.rename(target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _umask_modes(folder: Path) -> None:
    """Give ``folder`` (made by ``tempfile.mkdtemp``, mode 0700) the mode the umask gives new folders."""
    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (copy across filesystems), creating parent folders."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def link_tree(src: Path, dst: Path, replace: bool = False) -> None:
    """Link (or copy) every file below ``src`` into ``dst``; ``replace`` empties ``dst`` first."""
    if replace:
        shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.rglob("*"):
        if f.is_file():
            link_or_copy(f, dst / f.relative_to(src))
