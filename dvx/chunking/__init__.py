"""Content-defined chunking (canonical FastCDC 2020), accelerated by Cython.

``Chunker`` picks the compiled ``_fastcdc`` extension when it was built and the
pure-Python reference otherwise (with a one-time ``RuntimeWarning``). Both implement
``protocols/chunking.md`` and are tested against the same vectors.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import BinaryIO, Literal, Protocol

from dvx.chunking import reference
from dvx.chunking.params import (
    DEFAULT_AVG_SIZE,
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_SIZE,
    DEFAULT_NORMALIZATION,
    DEFAULT_SEED,
    CutParams,
    make_cut_params,
)

try:
    from dvx.chunking import _fastcdc  # type: ignore[attr-defined]

    HAVE_ACCELERATOR = True
except ImportError:  # pragma: no cover - exercised where the build failed
    _fastcdc = None
    HAVE_ACCELERATOR = False

__all__ = ["BufferPool", "Chunker", "HAVE_ACCELERATOR", "CutParams", "make_cut_params"]

#: Bytes read from a file per block; a multiple of every sane max chunk size.
BLOCK_SIZE = 8 << 20

_warned = False


class BufferPool(Protocol):
    """Where ``Chunker.iter_blocks`` takes its read buffers from (``dvx.workspace.BlockPool``)."""

    def take(self, size: int) -> bytearray: ...


class _ReferenceCutter:
    def __init__(self, params: CutParams) -> None:
        self._params = params

    def find_cuts(self, data: memoryview, length: int, eof: bool) -> tuple[list[int], list[int]]:
        return reference.find_cuts(data, length, eof, self._params)


class Chunker:
    """Splits byte streams into FastCDC chunks with fixed parameters."""

    def __init__(
        self,
        min_size: int = DEFAULT_MIN_SIZE,
        avg_size: int = DEFAULT_AVG_SIZE,
        max_size: int = DEFAULT_MAX_SIZE,
        normalization: int = DEFAULT_NORMALIZATION,
        seed: int = DEFAULT_SEED,
        *,
        rounding: Literal["round", "floor"] = "round",
        implementation: Literal["auto", "cython", "python"] = "auto",
    ) -> None:
        self.params = make_cut_params(min_size, avg_size, max_size, normalization, seed, rounding)
        use_cython = implementation == "cython" or (
            implementation == "auto" and HAVE_ACCELERATOR
        )
        if use_cython:
            if _fastcdc is None:
                raise RuntimeError("the Cython chunker is not built; reinstall dvx with a C compiler")
            self._cutter = _fastcdc.Cutter(self.params)
            self.implementation = "cython"
        else:
            global _warned
            if implementation == "auto" and not _warned:
                warnings.warn(
                    "dvx: Cython chunker not available, using the slow pure-Python reference; "
                    "reinstall dvx with a C compiler for full speed",
                    RuntimeWarning,
                    stacklevel=2,
                )
                _warned = True
            self._cutter = _ReferenceCutter(self.params)
            self.implementation = "python"

    @property
    def max_size(self) -> int:
        return self.params.max_size

    def find_cuts(
        self, data: bytes | bytearray | memoryview, length: int, eof: bool
    ) -> tuple[list[int], list[int]]:
        """Chunk end offsets (and gear hashes) within ``data[:length]``; see reference."""
        return self._cutter.find_cuts(memoryview(data), length, eof)  # type: ignore[no-any-return]

    def chunk_bytes(self, data: bytes | bytearray | memoryview) -> list[tuple[int, int, int]]:
        """``(offset, length, gear_hash)`` of every chunk of an in-memory buffer."""
        ends, hashes = self.find_cuts(data, len(data), True)
        out = []
        start = 0
        for end, h in zip(ends, hashes, strict=False):
            out.append((start, end - start, h))
            start = end
        return out

    def iter_blocks(self, f: BinaryIO, block_size: int = BLOCK_SIZE,
                    pool: BufferPool | None = None) -> Iterator[tuple[memoryview, list[int]]]:
        """Stream a file with bounded memory: yields ``(block, chunk_ends)``.

        ``block`` holds whole chunks only; ``chunk_ends`` are end offsets inside it.
        Each block has its own buffer, so it stays valid after the iteration moves on.
        With a ``pool``, buffers come from it and the consumer must hand each block's
        buffer back (``pool.release(block)``) once nothing reads it any more; a block
        never released is simply not reused.
        """
        block_size = max(block_size, 2 * self.params.max_size)
        take = pool.take if pool is not None else bytearray
        buf = take(block_size)
        filled = 0
        eof = False
        while not eof or filled:
            view = memoryview(buf)
            while not eof and filled < block_size:
                n = f.readinto(view[filled:])  # type: ignore[attr-defined]
                if not n:
                    eof = True
                    break
                filled += n
            if filled == 0:
                break
            ends, _ = self.find_cuts(view, filled, eof)
            used = ends[-1] if ends else 0
            tail = filled - used
            # Each block gets its own buffer: consumers (pack writer threads) may still
            # hold views of the previous one.
            nxt = take(block_size) if (tail or not eof) else buf
            if tail:
                nxt[:tail] = buf[used:filled]
            if ends:
                yield view[:used], ends
            buf = nxt
            filled = tail
