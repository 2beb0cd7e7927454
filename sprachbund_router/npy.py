"""An ``.npy`` file written in chunks and valid after every chunk."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np


class NpyWriter:
    """Append float32 rows to an ``.npy`` file that is valid after every chunk.

    The header (fixed at 128 bytes) is rewritten with the row count after each append, so a run
    stopped at any point leaves a file ``numpy.load`` reads, holding the rows done so far.
    """

    HEADER_BYTES = 128

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self.dim: int | None = None
        self._file: Any = None  # created with the first rows: a run that fails before them leaves an old file as it was

    def _header(self) -> bytes:
        text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({self.rows}, {self.dim}), }}"
        room = self.HEADER_BYTES - 10
        if len(text) + 1 > room:
            raise ValueError(f"npy header too long: {text}")
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", room) + (text.ljust(room - 1) + "\n").encode("latin1")

    def append(self, vectors: np.ndarray) -> None:
        """Write ``vectors`` ``[n, dim]`` after the rows already written."""
        if self.dim is None:
            self.dim = int(vectors.shape[1])
            self._file = self.path.open("wb")
            self._file.write(self._header())
        elif vectors.shape[1] != self.dim:
            raise ValueError(f"vectors of dim {vectors.shape[1]} after {self.dim}")
        self._file.seek(0, 2)
        self._file.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        self.rows += len(vectors)
        self._file.seek(0)
        self._file.write(self._header())
        self._file.flush()

    def close(self) -> None:
        """Close the file (it is already complete)."""
        if self._file is not None:
            self._file.close()
