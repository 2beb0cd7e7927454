"""``save_pretrained`` of the router, as a mixin of :class:`~sprachbund_router.router.SprachbundRouter`:
a staged, locked copy of the router's own files (the same containment as loading)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from sprachbund_router.config import LANGUAGE_VECTORS_NAME
from sprachbund_router.errors import CheckpointError
from sprachbund_router.language_id import NGRAM_FILE
from sprachbund_router.validation import writable_inside


class SavingMixin:
    """Writes a router folder that :meth:`from_pretrained` loads back."""

    def save_pretrained(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Write this router (config, language vectors, local encoders, heads, spaces) to ``directory``.

        Atomic: everything is written into a fresh folder beside ``directory`` and moved into
        place when complete, so no existing link is ever written through and an interrupted save
        leaves the target as it was. A non-empty ``directory`` is refused unless ``overwrite=True``
        (then it is replaced whole: no stale file mixes in). Every source file is read through
        the same containment as loading (no link out of this router's folder).

        Raises:
            CheckpointError: the target is a link, or not empty without ``overwrite``, or cannot
                be written (the reason named, nothing changed).
        """
        from sprachbund_router.staging import WriterLock, is_new_directory, replace_directory

        directory = Path(directory)
        if directory.is_symlink():
            raise CheckpointError(f"{directory} is a symbolic link; save_pretrained never writes through a link")
        own = self.directory.resolve()
        target = directory.resolve() if directory.exists() else directory.absolute()
        if target == own:
            raise CheckpointError(f"{directory} is this router's own folder; save it to a new one")
        if target in own.parents:
            raise CheckpointError(f"{directory} contains this router's own folder ({self.directory}); replacing it would "
                                  "delete the router being saved; choose another folder")
        if directory.exists() and not is_new_directory(directory) and not overwrite:
            raise CheckpointError(f"{directory} exists and is not empty; pass overwrite=True to replace it whole")
        try:
            lock = WriterLock(directory).acquire()  # one writer per target, as for indexes and exports
        except OSError as err:
            raise CheckpointError(f"cannot write {directory}: {err.strerror or err}") from None
        try:
            if directory.exists() and not is_new_directory(directory) and not overwrite:  # filled while we waited
                raise CheckpointError(f"{directory} exists and is not empty; pass overwrite=True to replace it whole")
            staged = Path(tempfile.mkdtemp(prefix=f".{directory.name}.partial-", dir=directory.parent))
        except OSError as err:
            lock.release()
            raise CheckpointError(f"cannot write {directory}: {err.strerror or err}") from None
        except BaseException:
            lock.release()
            raise
        try:
            copied: list[tuple[str, ...]] = []
            # folders first, so a path named twice (two keys, one folder) or inside a copied folder is copied once
            for key, rel in sorted(self._local_relative_paths(), key=lambda kr: len(Path(kr[1]).parts)):
                dst = writable_inside(staged, rel, key)
                src = dst if rel in self._fitted_heads else self._local_path(rel, key)
                parts = Path(os.path.normpath(rel)).parts
                if rel in self._fitted_heads:  # a head fit_head trained: written, not copied
                    self._fitted_heads[rel].save(dst)
                    continue
                if any(parts[:len(c)] == c for c in copied):
                    continue
                copied.append(parts)
                if src.is_dir():
                    shutil.copytree(src, dst, symlinks=False)
                elif src.is_file():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)
            self.config.save(staged)
            replace_directory(staged, directory)
        except OSError as err:
            shutil.rmtree(staged, ignore_errors=True)
            raise CheckpointError(f"cannot write {directory}: {err.strerror or err}") from None
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        finally:
            lock.release()
        return directory

    def _local_relative_paths(self) -> Iterable[tuple[str, str]]:
        """(config key, relative path) of everything the router directory holds."""
        yield LANGUAGE_VECTORS_NAME, LANGUAGE_VECTORS_NAME
        for name, spec in self.config.encoders.items():
            if spec.path is not None:
                yield f"encoders.{name}.path", spec.path
        for task, per_group in self.config.heads.items():
            for group, rel in per_group.items():
                yield f"heads.{task}.{group}", rel
        for name, space in self.config.spaces.items():
            yield f"spaces.{name}.path", space.path
        yield "analysis", "analysis"
        if "ngram" in "+".join(self.config.language_id.backends).split("+"):  # the n-gram identifier's model lives in the router folder
            yield "language_id", NGRAM_FILE
