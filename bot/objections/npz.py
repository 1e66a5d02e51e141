"""The arrays of an ``.npz`` file, read without NumPy.

The running bot reads messages in plain Python (``model``): importing NumPy would cost it some
15 MB, a fifth of a bare Wechaty bot (issue 20). The model's artefact stays a NumPy ``.npz`` (a
zip of ``.npy`` files, written by training, readable with ``numpy.load``); this reads its arrays'
bytes as they are, after checking each header: the format is NumPy's documented one
(``numpy.lib.format``: magic, version, a header dict, the data in C order).
"""

from __future__ import annotations

import ast
import struct
import zipfile
from dataclasses import dataclass
from math import prod
from pathlib import Path

_MAGIC = b"\x93NUMPY"
_ITEM_SIZES = {"|u1": 1, "|i1": 1, "<f2": 2, "<f4": 4, "<f8": 8}  # the types the model's artefact uses


class NpzError(ValueError):
    """An array this reader cannot take as it is (another type, order, or a damaged file)."""


@dataclass(frozen=True)
class Stored:
    """One array: its NumPy type string, its shape and its bytes (C order)."""

    dtype: str
    shape: tuple[int, ...]
    data: memoryview


def read_npz(path: Path) -> dict[str, Stored]:
    """Every array in ``path``, by name (without ``.npy``)."""
    arrays: dict[str, Stored] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith(".npy"):
                    arrays[name.removesuffix(".npy")] = _parse(name, archive.read(name))
    except (NpzError, OSError):
        raise
    except Exception as exc:  # zip, zlib, LZMA, encryption: a damaged file is one error here
        raise NpzError(f"{path.name}: damaged ({type(exc).__name__}: {exc})") from None
    return arrays


def _parse(name: str, raw: bytes) -> Stored:
    if not raw.startswith(_MAGIC) or len(raw) < 10:
        raise NpzError(f"{name}: not a .npy array")
    major = raw[6]
    if major not in (1, 2, 3):
        raise NpzError(f"{name}: .npy format version {major} is unknown")
    start = 10 if major == 1 else 12
    if len(raw) < start:
        raise NpzError(f"{name}: cut short")
    (length,) = struct.unpack_from("<H" if major == 1 else "<I", raw, 8)
    try:
        header = ast.literal_eval(raw[start : start + length].decode("latin1"))
        dtype, fortran, shape = header["descr"], header["fortran_order"], tuple(header["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError):
        raise NpzError(f"{name}: unreadable .npy header") from None
    if (
        not isinstance(dtype, str)
        or dtype not in _ITEM_SIZES
        or fortran is not False
        or not all(isinstance(n, int) and n >= 0 for n in shape)
    ):
        raise NpzError(f"{name}: an array of {dtype} {shape} (fortran order: {fortran}) is not expected")
    data = memoryview(raw)[start + length :]
    if len(data) != prod(shape) * _ITEM_SIZES[dtype]:
        raise NpzError(f"{name}: {len(data)} bytes of data for {dtype} {shape}")
    return Stored(dtype, shape, data)
