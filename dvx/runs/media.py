"""Histograms and images a run logs (``protocols/runs.md`` §4.1).

``run.log({"weights": dvx.Histogram(w), "sample": dvx.Image(arr, caption="epoch 3")})``:
the training thread only builds the object (a histogram's counts, an image's pixels
copied); the background writer encodes it, names the file by its BLAKE3 digest in the
run's ``media/`` directory (the same object logged twice is stored once) and puts a
reference in the metric segment. At finish ``media/`` is added to the DVX store like
``metrics/``. ``read_media`` gives the objects back.

numpy is needed only to log arrays (a histogram of an array, an image from pixels);
Pillow (the ``images`` extra) only to log ``PIL.Image`` objects and to decode images
back into arrays. PNG files are written by DVX itself (zlib), so the bytes, and so the
content id, of an image do not depend on what is installed.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import zlib
from typing import Any

from dvx.errors import CorruptObjectError

KIND_HISTOGRAM, KIND_IMAGE = 4, 5  # segments.py's point kinds (runs.md §4)

MAX_BINS = 100_000  # a histogram is a small object, not a copy of the data
_MEDIA_NAME = re.compile(r"^[0-9a-f]{64}(\.[a-z0-9]+){1,2}\Z")  # <BLAKE3>.<suffix>
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
          (b"BM", "bmp"))


def _canonical(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                       allow_nan=False) + "\n").encode()


class Histogram:
    """A histogram: ``Histogram(values, bins=64)`` bins ``values`` (any sequence or
    array of numbers) into ``bins`` equal bins over their finite range; or give the
    result directly: ``Histogram(counts=[...], edges=[...])`` with
    ``len(edges) == len(counts) + 1``. NaN and ±inf values are not binned but counted
    (``nonfinite``)."""

    KIND = KIND_HISTOGRAM
    __slots__ = ("counts", "edges", "nonfinite")

    def __init__(self, values: Any = None, bins: int = 64, *, counts: Any = None, edges: Any = None) -> None:
        if counts is not None or edges is not None:
            if values is not None or counts is None or edges is None:
                raise ValueError("Histogram takes either values or both counts and edges")
            self.counts = [_count(c) for c in _tolist(counts)]
            self.edges = [float(e) for e in _tolist(edges)]
            self.nonfinite = 0
        else:
            if values is None:
                raise ValueError("Histogram needs values (or counts and edges)")
            if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= MAX_BINS:
                raise ValueError(f"bins must be an integer from 1 to {MAX_BINS}, not {bins!r}")
            self.counts, self.edges, self.nonfinite = _histogram(values, bins)
        if len(self.edges) != len(self.counts) + 1 or not self.counts:
            raise ValueError("a histogram needs len(edges) == len(counts) + 1 >= 2")
        e = self.edges
        if not all(map(math.isfinite, e)) or any(b <= a for a, b in zip(e[:-1], e[1:], strict=True)):
            raise ValueError("histogram edges must be finite and increasing")

    def encode(self) -> bytes:
        return _canonical({"counts": self.counts, "dvx_media": "histogram", "edges": self.edges,
                           "nonfinite": self.nonfinite})

    def describe(self) -> dict[str, Any]:
        return {"bins": len(self.counts), "count": sum(self.counts), "type": "histogram"}

    suffix = ".hist.json"

    @classmethod
    def decode(cls, data: bytes) -> Histogram:
        obj = json.loads(data)
        if obj.get("dvx_media") != "histogram":
            raise ValueError("not a DVX histogram")
        h = cls(counts=obj["counts"], edges=obj["edges"])
        h.nonfinite = int(obj.get("nonfinite") or 0)
        return h

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Histogram) and (self.counts, self.edges, self.nonfinite) == \
            (other.counts, other.edges, other.nonfinite)

    def __repr__(self) -> str:
        return f"Histogram(bins={len(self.counts)}, count={sum(self.counts)}, " \
               f"range=[{self.edges[0]:g}, {self.edges[-1]:g}])"


def _count(c: Any) -> int:
    n = int(c)
    if n < 0 or n != c:
        raise ValueError(f"histogram counts must be non-negative integers, not {c!r}")
    return n


def _tolist(x: Any) -> list[Any]:
    tolist = getattr(x, "tolist", None)
    out = tolist() if tolist is not None else list(x)
    return out if isinstance(out, list) else [out]


def _histogram(values: Any, bins: int) -> tuple[list[int], list[float], int]:
    try:
        import numpy as np
    except ImportError:
        np = None  # type: ignore[assignment]
    if np is not None:
        a = np.asarray(values, dtype=np.float64).ravel()
        finite = a[np.isfinite(a)]
        nonfinite = int(a.size - finite.size)
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        counts, edges = np.histogram(finite, bins=bins, range=(lo, hi))
        return counts.tolist(), edges.tolist(), nonfinite
    flat = [float(v) for v in _tolist(values)]
    finite_l = [v for v in flat if math.isfinite(v)]
    lo, hi = (min(finite_l), max(finite_l)) if finite_l else (0.0, 1.0)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    width = (hi - lo) / bins
    edges_l = [lo + i * width for i in range(bins)] + [hi]
    counts_l = [0] * bins
    for v in finite_l:
        counts_l[min(bins - 1, int((v - lo) / width))] += 1
    return counts_l, edges_l, len(flat) - len(finite_l)


class Image:
    """An image: ``Image(array_or_path_or_PIL_image, caption=None)``.

    * a numpy array, ``H×W`` (grey), ``H×W×1/3/4`` (grey, RGB, RGBA) or ``C×H×W`` with
      C in 1, 3, 4 (as PyTorch holds them): uint8 as is; floats are taken as 0..1 when
      they all lie there (else 0..255), then rounded and clipped; stored as PNG;
    * a path: the file's bytes are stored as they are (PNG, JPEG, GIF, BMP, WebP or
      anything else, named by the file's extension);
    * a ``PIL.Image.Image``: stored as PNG (needs Pillow).
    """

    KIND = KIND_IMAGE
    __slots__ = ("_pixels", "_bytes", "format", "caption", "width", "height")

    def __init__(self, data: Any, caption: str | None = None) -> None:
        self.caption = None if caption is None else str(caption)
        self._pixels: Any = None
        self._bytes: bytes | None = None
        if isinstance(data, (str, os.PathLike)):
            with open(data, "rb") as f:
                self._bytes = f.read()
            self.format = _sniff(self._bytes, os.fspath(data))
            self.width, self.height = _png_size(self._bytes) if self.format == "png" else (None, None)
            return
        if type(data).__module__.startswith("PIL.") and hasattr(data, "convert"):
            import numpy as np

            data = np.asarray(data.convert("RGBA" if "A" in data.mode else "RGB"))
        self._pixels = _pixels(data)
        self.format = "png"
        self.height, self.width = int(self._pixels.shape[0]), int(self._pixels.shape[1])

    @property
    def suffix(self) -> str:
        return "." + self.format

    def encode(self) -> bytes:
        if self._bytes is None:
            self._bytes = encode_png(self._pixels)
            self._pixels = None
        return self._bytes

    def describe(self) -> dict[str, Any]:
        return {"caption": self.caption, "format": self.format, "height": self.height, "type": "image",
                "width": self.width}

    @property
    def data(self) -> bytes:
        """The stored bytes (a PNG for arrays)."""
        return self.encode()

    @classmethod
    def from_bytes(cls, data: bytes, fmt: str, caption: str | None = None) -> Image:
        img = cls.__new__(cls)
        img._pixels, img._bytes, img.format, img.caption = None, data, fmt, caption
        img.width, img.height = _png_size(data) if fmt == "png" else (None, None)
        return img

    def to_numpy(self) -> Any:
        """The pixels as a numpy array (needs Pillow: ``pip install dvx[images]``)."""
        import io

        import numpy as np
        from PIL import Image as PILImage

        return np.asarray(PILImage.open(io.BytesIO(self.encode())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and self.encode() == other.encode() and self.caption == other.caption

    def __repr__(self) -> str:
        return f"Image({self.format}, {self.width}x{self.height}, caption={self.caption!r})"


def _sniff(data: bytes, path: str) -> str:
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    return ext if ext.isalnum() and len(ext) <= 8 else "bin"


def _png_size(data: bytes) -> tuple[int | None, int | None]:
    if len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    return None, None


def _pixels(data: Any) -> Any:
    import numpy as np

    a = np.asarray(data)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
        a = a.transpose(1, 2, 0)  # C×H×W
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or 0 in a.shape:
        raise ValueError(f"an image array must be H×W, H×W×1/3/4 or C×H×W, not shape {a.shape}")
    if a.dtype == np.uint8:
        return np.array(a, copy=True)  # the caller may change theirs
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    f = a.astype(np.float64)
    finite = f[np.isfinite(f)]
    if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
        f = f * 255.0
    return np.clip(np.nan_to_num(np.rint(f), nan=0.0), 0, 255).astype(np.uint8)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def encode_png(pixels: Any) -> bytes:
    """A PNG of a uint8 ``H×W`` (grey), ``H×W×3`` (RGB) or ``H×W×4`` (RGBA) array:
    8-bit, filter 0 on every row, zlib level 6, no ancillary chunks (runs.md §4.1)."""
    h, w = pixels.shape[0], pixels.shape[1]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    color = {1: 0, 3: 2, 4: 6}[channels]
    rows = pixels.reshape(h, w * channels)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 6)) \
        + _chunk(b"IEND", b"")


def is_media(v: Any) -> bool:
    return isinstance(v, (Histogram, Image))


def as_media(v: Any) -> Histogram | Image | None:
    """A value ``run.log`` stores as media: a Histogram or Image, or an array of one or
    more dimensions (a histogram of its values); None for anything else."""
    if isinstance(v, (Histogram, Image)):
        return v
    if getattr(v, "ndim", 0) >= 1 and hasattr(v, "__array__") and hasattr(v, "dtype"):
        try:
            return Histogram(v)
        except (TypeError, ValueError):
            return None
    return None


class MediaStore:
    """The background writer's side: writes each object once into ``directory`` under
    its BLAKE3 digest, returns the reference kept in the segment's ``text`` column."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._known: set[str] = set()

    def __call__(self, obj: Histogram | Image) -> str:
        from dvx.fsutil import atomic_write_bytes
        from dvx.hashing import file_digest

        data = obj.encode()
        name = file_digest(data).hex() + obj.suffix
        if name not in self._known:
            path = os.path.join(self.directory, name)
            if not os.path.exists(path):
                os.makedirs(self.directory, exist_ok=True)
                atomic_write_bytes(path, data, fsync=False)
            self._known.add(name)
        return json.dumps({**obj.describe(), "file": name, "size": len(data)}, sort_keys=True,
                          separators=(",", ":"), ensure_ascii=False)


def decode_media(ref: dict[str, Any], data: bytes) -> Histogram | Image:
    if ref.get("type") == "histogram":
        return Histogram.decode(data)
    return Image.from_bytes(data, ref.get("format") or "bin", ref.get("caption"))


def read_media(repo: Any, run: dict[str, Any], key: str | None = None) -> list[dict[str, Any]]:
    """The histograms and images of a run (from ``dvx.runs.catalog.find_run``), in the
    order logged: ``{"key", "step", "seq", "time", "value"}`` with ``value`` a
    ``Histogram`` or an ``Image``; only ``key``'s when given."""
    import pyarrow.compute as pc

    from dvx.runs.catalog import read_history
    from dvx.runs.commit import state_root
    from dvx.runs.record import RUN_DIR

    table = read_history(repo, run)
    mask = pc.greater_equal(table["kind"], KIND_HISTOGRAM)
    if key is not None:
        mask = pc.and_(mask, pc.equal(table["key"], key))
    rows = table.filter(mask).to_pylist()
    if not rows:
        return []
    if run.get("commit") is None or run.get("state") == "running":
        directory = os.path.join(state_root(repo), run["id"], "media")

        def load(name: str) -> bytes:
            with open(os.path.join(directory, name), "rb") as f:
                return f.read()
    else:
        from dvx.gitio import GitRepo
        from dvx.pointer import parse_pointer
        from dvx.workspace import flatten_tree

        git = GitRepo(repo.root)
        blob = git.blob_at(git.commit_info(run["commit"]), f"{RUN_DIR}/media.dvx")
        if blob is None:
            raise FileNotFoundError(f"run {run['id']} holds no media.dvx")
        files = flatten_tree(repo.store, parse_pointer(blob[1], f"{RUN_DIR}/media.dvx").oid)[0]

        def load(name: str) -> bytes:
            with repo.store.open_file(files[name][0]) as f:
                return f.read()  # type: ignore[no-any-return]
    out = []
    cache: dict[str, bytes] = {}
    for r in rows:
        ref = json.loads(r["text"])
        name = ref.get("file") if isinstance(ref, dict) else None
        if not (isinstance(name, str) and _MEDIA_NAME.match(name)):  # from a record: untrusted
            raise CorruptObjectError(f"run {run['id']}: invalid media reference {str(name)[:80]!r}",
                                     "the run was not written by dvx")
        data = cache.get(ref["file"])
        if data is None:
            data = cache[ref["file"]] = load(ref["file"])
        out.append({"key": r["key"], "step": r["step"], "seq": r["seq"], "time": r["time"],
                    "value": decode_media(ref, data)})
    return out
