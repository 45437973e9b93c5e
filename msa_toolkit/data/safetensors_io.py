"""Streaming safetensors I/O: write a file tensor-row by tensor-row, read it back as memmaps.

The writer keeps one temporary file per tensor and concatenates them behind the header at
the end, so a MOSEI-sized split never has to fit in memory; the reader maps every tensor of
a file as a read-only ``numpy.memmap`` view, so a sample reads only its own rows. Both follow
the standard safetensors layout (8-byte little-endian header length, JSON header, payload).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._io import atomic_write
from ..errors import DatasetError

#: numpy dtype -> safetensors dtype tag
ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.float16): "F16",
             np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.int16): "I16",
             np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}
#: safetensors dtype tag -> numpy dtype
NP_DTYPES = {v: k for k, v in ST_DTYPES.items()}
#: the header is padded with spaces to a multiple of this many bytes (payload alignment)
HEADER_ALIGNMENT = 8
#: buffer size used when copying the per-tensor parts into the final file
COPY_BUFFER_BYTES = 1 << 20


class StreamingSafetensorsWriter:
    """Writes a safetensors file tensor-row by tensor-row without holding it in memory.

    :meth:`declare` a tensor (dtype and trailing shape), :meth:`append` rows to it in any
    order, then :meth:`close` writes the file atomically (or :meth:`abort` drops everything).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.path.stem}.", dir=self.path.parent))
        # name -> (file handle, dtype, trailing shape, rows)
        self._parts: dict[str, list[Any]] = {}

    def declare(self, name: str, dtype: Any, trailing: tuple[int, ...] = ()) -> None:
        """Start tensor ``name`` (no-op when already declared)."""
        if name not in self._parts:
            fh = open(self._tmpdir / f"{len(self._parts)}.bin", "wb")
            self._parts[name] = [fh, np.dtype(dtype), tuple(trailing), 0]

    def append(self, name: str, arr: np.ndarray) -> None:
        """Append the rows of ``arr`` (shape ``[rows, *trailing]``) to tensor ``name``."""
        fh, dtype, trailing, rows = self._parts[name]
        a = np.ascontiguousarray(arr, dtype=dtype)
        if a.shape[1:] != trailing:
            raise ValueError(f"{name}: rows of shape {a.shape[1:]} appended to a tensor of rows {trailing}")
        fh.write(a.tobytes())
        self._parts[name][3] = rows + a.shape[0]

    def _header(self, metadata: Mapping[str, str] | None) -> bytes:
        header: dict[str, Any] = {}
        start = 0
        for name, (fh, dtype, trailing, rows) in self._parts.items():
            fh.close()
            nbytes = rows * int(np.prod(trailing, dtype=np.int64)) * dtype.itemsize
            header[name] = {"dtype": ST_DTYPES[dtype], "shape": [rows, *trailing],
                            "data_offsets": [start, start + nbytes]}
            start += nbytes
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        hb = json.dumps(header, separators=(",", ":")).encode()
        return hb + b" " * ((HEADER_ALIGNMENT - len(hb) % HEADER_ALIGNMENT) % HEADER_ALIGNMENT)

    def close(self, metadata: Mapping[str, str] | None = None) -> None:
        """Write the file (header, then every tensor's rows) and remove the temporary parts."""
        try:
            hb = self._header(metadata)

            def write(tmp: str) -> None:
                with open(tmp, "wb") as out:
                    out.write(struct.pack("<Q", len(hb)))
                    out.write(hb)
                    for i in range(len(self._parts)):
                        with open(self._tmpdir / f"{i}.bin", "rb") as src:
                            shutil.copyfileobj(src, out, COPY_BUFFER_BYTES)

            atomic_write(self.path, write)
        finally:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def abort(self) -> None:
        """Drop everything written so far (the destination file is not touched)."""
        for fh, *_ in self._parts.values():
            fh.close()
        shutil.rmtree(self._tmpdir, ignore_errors=True)


def read_safetensors_mmap(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as read-only ``numpy.memmap`` views (nothing is read yet)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (OSError, struct.error, ValueError) as e:
        raise DatasetError(f"{path}: not a readable safetensors file ({e})") from e
    base = 8 + n
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = NP_DTYPES[info["dtype"]]
        shape = tuple(int(s) for s in info["shape"])
        begin, end = info["data_offsets"]
        if end == begin:
            out[name] = np.zeros(shape, dtype)
        else:
            out[name] = np.memmap(path, dtype=dtype, mode="r", offset=base + begin, shape=shape)
    return out


__all__ = ["StreamingSafetensorsWriter", "read_safetensors_mmap", "ST_DTYPES", "NP_DTYPES"]
