"""FastCDC 2020 parameters: gear table, masks and mask selection.

Implements ``protocols/chunking.md`` sections 2 and 3. The gear table is not a literal:
it is derived from its published generation rule (``GEAR[i]`` = first 8 bytes,
big-endian, of ``MD5(bytes([i]) * 64)``) and checked against its published digest in
the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

U64 = (1 << 64) - 1

#: MASKS[bits] has exactly ``bits`` one-bits (published FastCDC masks, 5..25).
MASKS: dict[int, int] = {
    5: 0x0000000001804110,
    6: 0x0000000001803110,
    7: 0x0000000018035100,
    8: 0x0000001800035300,
    9: 0x0000019000353000,
    10: 0x0000590003530000,
    11: 0x0000D90003530000,
    12: 0x0000D90103530000,
    13: 0x0000D90303530000,
    14: 0x0000D90313530000,
    15: 0x0000D90F03530000,
    16: 0x0000D90303537000,
    17: 0x0000D90703537000,
    18: 0x0000D90707537000,
    19: 0x0000D91707537000,
    20: 0x0000D91747537000,
    21: 0x0000D91767537000,
    22: 0x0000D93767537000,
    23: 0x0000D93777537000,
    24: 0x0000D93777577000,
    25: 0x0000DB3777577000,
}

MIN_SIZE_LIMIT = 64
MAX_SIZE_LIMIT = 1 << 30

#: The default chunker settings (``protocols/chunking.md``), written into ``.dvx/config``
#: by ``dvx init``; a repository keeps its own for life. The one place they are defined.
ALGORITHM = "fastcdc2020"  # the only one; a new one would be a format extension
DEFAULT_MIN_SIZE = 16 * 1024
DEFAULT_AVG_SIZE = 64 * 1024
DEFAULT_MAX_SIZE = 256 * 1024
DEFAULT_NORMALIZATION = 1
DEFAULT_SEED = 0


@lru_cache(maxsize=1)
def base_gear_table() -> tuple[int, ...]:
    """The canonical 256-entry gear table (seed 0)."""
    import hashlib  # here: config validation imports this module on every command

    return tuple(
        int.from_bytes(hashlib.md5(bytes([i]) * 64).digest()[:8], "big") for i in range(256)
    )


def gear_tables(seed: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(GEAR, GEAR_LS)`` for a seed: every entry XORed with the seed, LS shifted left 1."""
    gear = tuple((g ^ seed) & U64 for g in base_gear_table())
    gear_ls = tuple((g << 1) & U64 for g in gear)
    return gear, gear_ls


@dataclass(frozen=True)
class CutParams:
    """Everything the cut loop needs, derived once from the chunker settings."""

    min_size: int
    avg_size: int
    max_size: int
    mask_s: int
    mask_l: int
    gear: tuple[int, ...]
    gear_ls: tuple[int, ...]

    @property
    def mask_s_ls(self) -> int:
        return (self.mask_s << 1) & U64

    @property
    def mask_l_ls(self) -> int:
        return (self.mask_l << 1) & U64


def mask_bits(avg_size: int, rounding: Literal["round", "floor"] = "round") -> int:
    """Number of mask bits for an average size: ``round(log2(avg))`` (canonical)."""
    value = math.log2(avg_size)
    return int(math.floor(value)) if rounding == "floor" else int(round(value))


def check_settings(min_size: int, avg_size: int, max_size: int, normalization: int, seed: int,
                   rounding: Literal["round", "floor"] = "round") -> tuple[int, int]:
    """The rules chunker settings must meet; returns the bits of the small and large
    masks. Raises ``ValueError``. Cheap (no tables): config loading runs it every time."""
    if not (MIN_SIZE_LIMIT <= min_size <= avg_size <= max_size <= MAX_SIZE_LIMIT):
        raise ValueError(
            f"chunker sizes must satisfy {MIN_SIZE_LIMIT} <= min <= avg <= max <= "
            f"{MAX_SIZE_LIMIT}: got min={min_size} avg={avg_size} max={max_size}"
        )
    if normalization not in (0, 1, 2, 3):
        raise ValueError(f"chunker normalization must be 0..3, got {normalization}")
    if not 0 <= seed <= U64:
        raise ValueError(f"chunker seed must be an unsigned 64-bit integer, got {seed}")
    bits = mask_bits(avg_size, rounding)
    small, large = bits + normalization, bits - normalization
    if small not in MASKS or large not in MASKS:
        raise ValueError(
            f"average size {avg_size} with normalization {normalization} needs masks "
            f"{large}..{small} bits; only {min(MASKS)}..{max(MASKS)} exist"
        )
    return small, large


def make_cut_params(
    min_size: int,
    avg_size: int,
    max_size: int,
    normalization: int = DEFAULT_NORMALIZATION,
    seed: int = DEFAULT_SEED,
    rounding: Literal["round", "floor"] = "round",
) -> CutParams:
    """Validate chunker settings and derive masks/tables. Raises ``ValueError``."""
    small, large = check_settings(min_size, avg_size, max_size, normalization, seed, rounding)
    gear, gear_ls = gear_tables(seed)
    return CutParams(min_size, avg_size, max_size, MASKS[small], MASKS[large], gear, gear_ls)
