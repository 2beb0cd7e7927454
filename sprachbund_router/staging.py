"""Placing files: folders written beside their target and moved into place only when complete,
and hard links where the filesystem allows (copies elsewhere).

An interrupted export or index build then leaves no half-written folder under the target name
(only a ``.NAME.partial-*`` folder, removed on errors). Encoders are hundreds of megabytes; routers,
Hub dry runs and cache layouts share them by hard link so building one costs no disk space.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

from sprachbund_router.errors import CheckpointError

logger = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class WriterLock:
    """One writer per target: ``.NAME.lock`` beside ``target``, naming its process (pid and host).

    A lock whose process is gone (same host, pid not running) is taken over with a warning, and
    the partial folders that process left beside the target are removed. A lock held by a live
    process, or by another host, is refused before any work is done.

    Args:
        target: the folder to be written.
        error: the exception raised when another writer holds the lock.
    """

    def __init__(self, target: str | Path, error: type[Exception] = CheckpointError) -> None:
        self.target = Path(target)
        self.path = self.target.parent / f".{self.target.name}.lock"
        self._error = error
        self.held = False

    def acquire(self) -> WriterLock:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._take_over_stale():
                    raise self._error(
                        f"another run is writing {self.target} ({self.path} is held by {self._owner_text()}); "
                        "wait for it to finish") from None
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(me)
            self.held = True
            return self
        raise self._error(f"cannot take the lock {self.path}: another run took it meanwhile")

    def _owner(self) -> dict[str, object] | None:
        try:
            raw = json.loads(self.path.read_bytes()[:4096].decode("utf-8"))
        except (OSError, ValueError):
            return None
        return raw if isinstance(raw, dict) and isinstance(raw.get("pid"), int) else None

    def _owner_text(self) -> str:
        owner = self._owner()
        return f"process {owner['pid']} on {owner.get('host')}" if owner else "an unknown process"

    def _take_over_stale(self) -> bool:
        """Remove the lock (and its partial folders) when its process is gone; True if removed."""
        owner = self._owner()
        if owner is None:  # empty or garbage: a writer that died between create and write, or an old-style lock
            try:
                age = os.stat(self.path).st_mtime
            except FileNotFoundError:
                return True
            import time

            if time.time() - age < 60:
                return False
        elif owner.get("host") != socket.gethostname() or _alive(int(owner["pid"])):  # type: ignore[call-overload]
            return False
        logger.warning("%s was left by %s, which is no longer running: taking it over", self.path,
                       f"process {owner['pid']}" if owner else "a writer that died")
        for partial in self.target.parent.glob(f".{self.target.name}.partial-*"):
            shutil.rmtree(partial, ignore_errors=True)
        self.path.unlink(missing_ok=True)
        return True

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


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
        self._lock = WriterLock(self.target, error).acquire()  # one writer per target, refused before any work
        self.lock = self._lock.path
        try:
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.partial-", dir=self.target.parent))
        except BaseException:
            self._lock.release()
            raise
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
            self._lock.release()
        return self.target

    def abort(self) -> None:
        """Remove the partial folder (and the lock)."""
        shutil.rmtree(self.path, ignore_errors=True)
        self._lock.release()


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
