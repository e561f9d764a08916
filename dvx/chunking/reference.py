"""Pure-Python reference of canonical FastCDC 2020 (``protocols/chunking.md`` §3).

Readable, slow (~a few MB/s), and the definition the Cython accelerator is tested
against. Used automatically (with a warning) when the extension is missing.
"""

from __future__ import annotations

from dvx.chunking.params import U64, CutParams


def cut(data: bytes | bytearray | memoryview, start: int, end: int, p: CutParams) -> tuple[int, int]:
    """Find the first chunk of ``data[start:end]``.

    Returns ``(length, gear_hash)``. ``end - start`` is the number of bytes that remain
    in the stream (or at least ``max_size`` of them).
    """
    remaining = end - start
    if remaining <= p.min_size:
        return remaining, 0
    center = p.avg_size
    if remaining > p.max_size:
        remaining = p.max_size
    elif remaining < center:
        center = remaining
    gear, gear_ls = p.gear, p.gear_ls
    mask_s, mask_l = p.mask_s, p.mask_l
    mask_s_ls, mask_l_ls = p.mask_s_ls, p.mask_l_ls
    index = p.min_size // 2
    h = 0
    # Two bytes per step; the first uses the pre-shifted table (FastCDC 2020 "roll two").
    while index < center // 2:
        a = start + index * 2
        h = ((h << 2) + gear_ls[data[a]]) & U64
        if h & mask_s_ls == 0:
            return index * 2, h
        h = (h + gear[data[a + 1]]) & U64
        if h & mask_s == 0:
            return index * 2 + 1, h
        index += 1
    while index < remaining // 2:
        a = start + index * 2
        h = ((h << 2) + gear_ls[data[a]]) & U64
        if h & mask_l_ls == 0:
            return index * 2, h
        h = (h + gear[data[a + 1]]) & U64
        if h & mask_l == 0:
            return index * 2 + 1, h
        index += 1
    return remaining, h


def find_cuts(
    data: bytes | bytearray | memoryview, length: int, eof: bool, p: CutParams
) -> tuple[list[int], list[int]]:
    """Chunk end offsets in ``data[:length]`` and their gear hashes.

    Without ``eof`` it stops while fewer than ``max_size`` bytes remain, because the cut
    for a short remainder depends on how much follows; the caller keeps the tail.
    """
    ends: list[int] = []
    hashes: list[int] = []
    pos = 0
    while pos < length and (eof or length - pos >= p.max_size):
        n, h = cut(data, pos, length, p)
        pos += n
        ends.append(pos)
        hashes.append(h)
    return ends, hashes
