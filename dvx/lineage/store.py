"""The lineage index file, ``.dvx/state/lineage/graph.dvxl`` (``protocols/lineage.md`` §4).

One file, written whole (a temporary file and a rename), read through ``mmap``::

    "DVXLINEG"  u32 LE format (1)  u32 LE header length  header (JSON)  padding
    sections, each starting at a multiple of 8

The header names the signature of the refs it was built from and where each section
lies; a query reads the header, compares the signature, and maps the arrays it walks
(forward and reverse adjacency) without copying them. Node attributes are JSON, one
document per node, decoded only for the nodes a query returns. The file is a cache:
a reader that finds it missing, damaged or of another format rebuilds it from git.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import mmap
import os
import sys
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dvx.errors import DvxError

if TYPE_CHECKING:
    import numpy as np

MAGIC = b"DVXLINEG"
FORMAT = 1
FILE_NAME = "graph.dvxl"
# name -> numpy dtype ("bytes": raw); the order sections are written in
SECTIONS = (
    ("node_kind", "u1"), ("key_offsets", "<u4"), ("keys", "bytes"),
    ("meta_offsets", "<u4"), ("meta", "bytes"),
    ("edge_src", "<u4"), ("edge_dst", "<u4"), ("edge_kind", "u1"), ("fwd_offsets", "<u4"),
    ("rev_edges", "<u4"), ("rev_offsets", "<u4"), ("state", "bytes"), ("runs", "bytes"), ("walked", "bytes"),
)


class IndexDamaged(DvxError):
    """The index file cannot be read (it is rebuilt from git)."""


def index_dir(dvx_dir: str) -> str:
    return os.path.join(dvx_dir, "state", "lineage")


@dataclass
class Tables:
    """The graph as arrays: what the file holds, section by section. Keys and
    attributes are one blob each with N + 1 offsets, so an update that touches a few
    nodes copies the rest as they are."""

    node_kind: np.ndarray  # u1[N]
    keys_blob: bytes  # N node keys, concatenated
    key_offsets: np.ndarray  # u4[N + 1]
    meta_blob: bytes  # N compact JSON documents, concatenated
    meta_offsets: np.ndarray  # u4[N + 1]
    edge_src: np.ndarray  # u4[E], sorted by (src, dst, kind)
    edge_dst: np.ndarray
    edge_kind: np.ndarray
    state: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, str] | bytes = field(default_factory=dict)  # run id -> commit (bytes: the section as is)
    walked: set[str] = field(default_factory=set)  # every commit read

    @classmethod
    def from_lists(cls, node_kind: np.ndarray, keys: list[str], meta: list[bytes], edge_src: np.ndarray,
                   edge_dst: np.ndarray, edge_kind: np.ndarray, state: dict[str, Any],
                   runs: dict[str, str] | None = None, walked: set[str] | None = None) -> Tables:
        key_bytes = [k.encode() for k in keys]
        return cls(node_kind, b"".join(key_bytes), offsets_of([len(k) for k in key_bytes]), b"".join(meta),
                   offsets_of([len(m) for m in meta]), edge_src, edge_dst, edge_kind, state, runs or {},
                   walked or set())


def offsets_of(lengths: Any) -> np.ndarray:
    import numpy as np

    out = np.zeros(len(lengths) + 1, np.uint32)
    np.cumsum(lengths, out=out[1:])
    return out


def _adjacency(n: int, by: np.ndarray) -> np.ndarray:
    import numpy as np

    counts = np.bincount(by, minlength=n) if len(by) else np.zeros(n, np.int64)
    offsets = np.zeros(n + 1, np.uint32)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def sort_edges(src: np.ndarray, dst: np.ndarray, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges without duplicates, sorted by (src, dst, kind)."""
    import numpy as np

    if not len(src):
        return (np.zeros(0, np.uint32),) * 2 + (np.zeros(0, np.uint8),)  # type: ignore[return-value]
    key = (src.astype(np.uint64) << np.uint64(35)) | (dst.astype(np.uint64) << np.uint64(3)) \
        | kind.astype(np.uint64)
    key = np.unique(key)
    dst = ((key >> np.uint64(3)) & np.uint64((1 << 32) - 1)).astype(np.uint32)
    return (key >> np.uint64(35)).astype(np.uint32), dst, (key & np.uint64(7)).astype(np.uint8)


def _edge_keys(src: np.ndarray, dst: np.ndarray, kind: np.ndarray) -> np.ndarray:
    import numpy as np

    shifted = (src.astype(np.uint64) << np.uint64(35)) | (dst.astype(np.uint64) << np.uint64(3))
    return shifted | kind.astype(np.uint64)


def merge_edges(src: np.ndarray, dst: np.ndarray, kind: np.ndarray,
                new: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted, distinct edges plus ``new`` ones: the same as :func:`sort_edges` of all,
    in time proportional to the new edges (plus one copy)."""
    import numpy as np

    if not new:
        return src, dst, kind
    have = _edge_keys(src, dst, kind)
    extra = np.array(new, np.uint64).reshape(-1, 3)
    add = np.unique(_edge_keys(extra[:, 0], extra[:, 1], extra[:, 2]))
    pos = np.searchsorted(have, add)
    fresh = ~((pos < len(have)) & (have[np.minimum(pos, len(have) - 1)] == add)) if len(have) else \
        np.ones(len(add), bool)
    key = np.insert(have, pos[fresh], add[fresh])
    mask = np.uint64((1 << 32) - 1)
    return ((key >> np.uint64(35)).astype(np.uint32), ((key >> np.uint64(3)) & mask).astype(np.uint32),
            (key & np.uint64(7)).astype(np.uint8))


def encode(t: Tables, signature: str) -> bytes:
    """The bytes of the index file (§4): deterministic for the same tables."""
    import numpy as np

    n, e = len(t.node_kind), len(t.edge_src)
    fwd = _adjacency(n, t.edge_src)
    rev_edges = np.lexsort((t.edge_kind, t.edge_src, t.edge_dst)).astype(np.uint32) if e \
        else np.zeros(0, np.uint32)
    rev = _adjacency(n, t.edge_dst)
    state = json.dumps(t.state, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    data: dict[str, bytes] = {
        "node_kind": np.ascontiguousarray(t.node_kind, np.uint8).tobytes(),
        "key_offsets": np.ascontiguousarray(t.key_offsets, np.uint32).tobytes(), "keys": t.keys_blob,
        "meta_offsets": np.ascontiguousarray(t.meta_offsets, np.uint32).tobytes(), "meta": t.meta_blob,
        "edge_src": np.ascontiguousarray(t.edge_src, np.uint32).tobytes(),
        "edge_dst": np.ascontiguousarray(t.edge_dst, np.uint32).tobytes(),
        "edge_kind": np.ascontiguousarray(t.edge_kind, np.uint8).tobytes(),
        "fwd_offsets": fwd.tobytes(), "rev_edges": rev_edges.tobytes(), "rev_offsets": rev.tobytes(),
        "state": state,
        # one "<run id> <commit>" or "<commit>" per line, sorted: ids and shas hold no space
        "runs": t.runs if isinstance(t.runs, bytes)
        else "".join(f"{r} {c}\n" for r, c in sorted(t.runs.items())).encode(),
        "walked": "".join(f"{c}\n" for c in sorted(t.walked)).encode(),
    }
    sections: dict[str, list[int]] = {}
    pos = 0
    for name, _ in SECTIONS:
        sections[name] = [pos, len(data[name])]
        pos += (len(data[name]) + 7) // 8 * 8
    body = b"".join(data[name] + b"\0" * ((-len(data[name])) % 8) for name, _ in SECTIONS)
    header = json.dumps({"crc32": zlib.crc32(body), "edges": e, "nodes": n, "sections": sections,
                         "signature": signature}, sort_keys=True, separators=(",", ":")).encode()
    head = MAGIC + FORMAT.to_bytes(4, "little") + len(header).to_bytes(4, "little") + header
    head += b"\0" * ((-len(head)) % 8)
    return head + body


def write(path: str, t: Tables, signature: str) -> bool:
    """Write the index atomically; False when the disk refuses (queries still work)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(encode(t, signature))
        os.replace(tmp, path)
        return True
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False


class Index:
    """A mapped index file: arrays for walking (memoryviews on the map: no copy, and no
    numpy, whose import alone would cost a command ~0.1 s), node keys and attributes on
    demand. The body's CRC-32 is checked on open, so a damaged file is rebuilt rather
    than walked."""

    def __init__(self, buf: bytes | mmap.mmap, where: str) -> None:
        self.where = where
        if len(buf) < 16 or buf[:8] != MAGIC:
            raise IndexDamaged(f"{where} is not a lineage index")
        version = int.from_bytes(buf[8:12], "little")
        if version != FORMAT:
            raise IndexDamaged(f"{where} has lineage index format {version}, not {FORMAT}")
        hlen = int.from_bytes(buf[12:16], "little")
        try:
            header = json.loads(bytes(buf[16:16 + hlen]))
            self.signature: str = header["signature"]
            self.n: int = header["nodes"]
            self.e: int = header["edges"]
            base = (16 + hlen + 7) // 8 * 8
            if zlib.crc32(memoryview(buf)[base:]) != header["crc32"]:
                raise ValueError("checksum mismatch")
            self._buf = buf
            self._sec: dict[str, tuple[int, int]] = {}
            for name, _dtype in SECTIONS:
                off, length = header["sections"][name]
                start = base + int(off)
                if start + int(length) > len(buf) or int(length) < 0:
                    raise ValueError(f"section {name} extends beyond the file")
                self._sec[name] = (start, int(length))
            arr = self._array
            self.node_kind = arr("node_kind", "u1", self.n)
            self.key_offsets = arr("key_offsets", "<u4", self.n + 1)
            self.meta_offsets = arr("meta_offsets", "<u4", self.n + 1)
            self.edge_src = arr("edge_src", "<u4", self.e)
            self.edge_dst = arr("edge_dst", "<u4", self.e)
            self.edge_kind = arr("edge_kind", "u1", self.e)
            self.fwd_offsets = arr("fwd_offsets", "<u4", self.n + 1)
            self.rev_edges = arr("rev_edges", "<u4", self.e)
            self.rev_offsets = arr("rev_offsets", "<u4", self.n + 1)
            self._check()
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise IndexDamaged(f"{where} is damaged: {exc}") from None
        self._keys_blob: bytes | None = None
        self._state: dict[str, Any] | None = None

    def _array(self, name: str, dtype: str, count: int) -> memoryview:
        start, length = self._sec[name]
        size = 1 if dtype == "u1" else 4
        if length != count * size:
            raise ValueError(f"section {name} holds {length} bytes, not {count} {dtype}")
        view = memoryview(self._buf)[start:start + length]
        if size == 4 and sys.byteorder != "little":  # the file is little-endian
            import array

            a = array.array("I", bytes(view))
            a.byteswap()
            return memoryview(a)
        return view.cast("I") if size == 4 else view.cast("B")

    def _check(self) -> None:
        """Cheap consistency checks on top of the checksum (a file this code did not
        write, or an older bug's): the ends of each offset table."""
        n, e = self.n, self.e
        for name in ("fwd_offsets", "rev_offsets", "key_offsets", "meta_offsets"):
            if getattr(self, name)[0] != 0:
                raise ValueError(f"{name} does not start at 0")
        if self.fwd_offsets[n] != e or self.rev_offsets[n] != e:
            raise ValueError("adjacency offsets do not add up to the edge count")
        if self.key_offsets[n] != self._sec["keys"][1] or self.meta_offsets[n] != self._sec["meta"][1]:
            raise ValueError("offsets do not add up to their section")

    # -- nodes -----------------------------------------------------------------------
    def _bytes(self, name: str) -> bytes:
        start, length = self._sec[name]
        return bytes(self._buf[start:start + length])

    @property
    def keys_blob(self) -> bytes:
        if self._keys_blob is None:
            self._keys_blob = self._bytes("keys")
        return self._keys_blob

    def key(self, i: int) -> str:
        return self.keys_blob[int(self.key_offsets[i]):int(self.key_offsets[i + 1])].decode()

    def keys(self) -> list[str]:
        blob, off = self.keys_blob, self.key_offsets.tolist()
        return [blob[off[i]:off[i + 1]].decode() for i in range(self.n)]

    def find(self, key: str) -> int | None:
        """The node of a key (a search of the key section: no table to build)."""
        hits = self.find_prefix(key, exact=True)
        return hits[0] if hits else None

    def find_prefix(self, prefix: str, exact: bool = False, limit: int = 20) -> list[int]:
        """Nodes whose key starts with ``prefix`` (is ``prefix``, with ``exact``)."""
        blob, want = self.keys_blob, prefix.encode()
        out: list[int] = []
        pos = blob.find(want)
        while pos >= 0 and len(out) < limit:
            i = bisect.bisect_right(self.key_offsets, pos) - 1
            if 0 <= i < self.n and int(self.key_offsets[i]) == pos:
                end = int(self.key_offsets[i + 1])
                if not exact or end - pos == len(want):
                    out.append(i)
            pos = blob.find(want, pos + 1)
        return out

    def meta(self, i: int) -> dict[str, Any]:
        start = self._sec["meta"][0]
        a, b = int(self.meta_offsets[i]), int(self.meta_offsets[i + 1])
        try:
            value = json.loads(bytes(self._buf[start + a:start + b]))
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def metas(self, nodes: list[int]) -> list[dict[str, Any]]:
        """The attributes of many nodes, decoded in one ``json.loads`` of a JSON array
        (a thousand nodes cost one parse, not a thousand)."""
        start = self._sec["meta"][0]
        off, buf = self.meta_offsets, self._buf
        parts = [bytes(buf[start + off[i]:start + off[i + 1]]) for i in nodes]
        try:
            values = json.loads(b"[" + b",".join(parts) + b"]")
        except ValueError:
            values = [self.meta(i) for i in nodes]
        return [v if isinstance(v, dict) else {} for v in values]

    def meta_blob(self) -> bytes:
        return self._bytes("meta")

    def runs_blob(self) -> bytes:
        return self._bytes("runs")

    def runs(self) -> dict[str, str]:
        """``run id -> commit`` of the runs in the graph."""
        lines = self._bytes("runs").decode("ascii", "replace").split("\n")
        return dict(line.split(" ", 1) for line in lines if " " in line)  # type: ignore[misc]

    def walked(self) -> set[str]:
        return set(self._bytes("walked").decode("ascii", "replace").split())

    @property
    def state(self) -> dict[str, Any]:
        if self._state is None:
            try:
                value = json.loads(self._bytes("state"))
            except ValueError:
                raise IndexDamaged(f"{self.where} is damaged: unreadable state") from None
            self._state = value if isinstance(value, dict) else {}
        return self._state


def open_index(path: str) -> Index | None:
    """The index at ``path`` (mapped), None when there is none; ``IndexDamaged`` when
    it cannot be read."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise IndexDamaged(f"{path} is empty")
            buf: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise IndexDamaged(f"{path} cannot be read: {exc}") from None
    return Index(buf, path)
