"""File manifests and trees: canonical encoding, parsing and checks.

Implements ``protocols/format.md`` §3 (manifest) and §4 (tree). Objects are immutable;
an object's id is ``hashing.object_id(kind, encode())``. Parsers accept only the
canonical encoding (so one object has exactly one id) and raise
``CorruptObjectError`` naming what is wrong.

Binary objects are plain slotted dataclasses rather than pydantic models: a tree of
100,000 entries must parse in milliseconds, and the parsers check every field by hand.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dvx.errors import CorruptObjectError
from dvx.hashing import ID_SIZE, KIND_CHUNK_LIST, KIND_MANIFEST, KIND_TREE, object_id

MANIFEST_MAGIC = b"DVXM"
TREE_MAGIC = b"DVXT"
CHUNK_LIST_MAGIC = b"DVXL"
OBJECT_VERSION = 1

_HEADER = struct.Struct("<4sB3x")  # magic, version, 3 reserved zero bytes
_MANIFEST_HEAD = struct.Struct("<Q32s")  # size, file digest
_CHUNK_REF = struct.Struct("<I32s")  # chunk length, chunk id
_TREE_HEAD = struct.Struct("<I")  # entry count
_ENTRY_HEAD = struct.Struct("<BBH")  # kind, mode flags, name length
_ENTRY_SIZES = struct.Struct("<QQ")  # size, file count
_LINK_LEN = struct.Struct("<H")

ENTRY_FILE = 1
ENTRY_TREE = 2
ENTRY_LINK = 3
ENTRY_KIND_NAMES = {ENTRY_FILE: "file", ENTRY_TREE: "tree", ENTRY_LINK: "link"}
MODE_EXEC = 0x01
MAX_NAME = 4095


def _header(data: bytes | memoryview, magic: bytes, what: str) -> int:
    if len(data) < _HEADER.size:
        raise CorruptObjectError(f"{what} object is truncated: {len(data)} bytes")
    got_magic, version = _HEADER.unpack_from(data, 0)
    if got_magic != magic:
        raise CorruptObjectError(f"{what} object has bad magic {got_magic!r}")
    if version != OBJECT_VERSION:
        raise CorruptObjectError(
            f"{what} object has format version {version}, this DVX reads version "
            f"{OBJECT_VERSION}; upgrade dvx"
        )
    if bytes(data[5:8]) != b"\0\0\0":
        raise CorruptObjectError(f"{what} object has non-zero reserved bytes")
    return _HEADER.size


#: files with more chunks than this get a two-level manifest (format.md §3)
FLAT_LIMIT = 256
LIST_MAX = 1024
LAYOUT_FLAT = 0
LAYOUT_LISTS = 1
_MANIFEST_LAYOUT = struct.Struct("<B3xI")  # layout, reserved, entry count
_LIST_REF = struct.Struct("<QI32s")  # bytes covered, chunk count, chunk-list id


def split_chunk_lists(chunks: tuple[tuple[int, bytes], ...]) -> list[tuple[tuple[int, bytes], ...]]:
    """Content-defined grouping of a chunk list: a group ends after a chunk whose id
    starts with a zero byte (1 in 256), or at ``LIST_MAX`` entries. An edit therefore
    changes only the groups around it, not the whole list."""
    groups: list[tuple[tuple[int, bytes], ...]] = []
    start = 0
    for i, (_, cid) in enumerate(chunks):
        if cid[0] == 0 or i + 1 - start == LIST_MAX:
            groups.append(chunks[start:i + 1])
            start = i + 1
    if start < len(chunks):
        groups.append(chunks[start:])
    return groups


def encode_chunk_list(group: tuple[tuple[int, bytes], ...]) -> bytes:
    return b"".join([_HEADER.pack(CHUNK_LIST_MAGIC, OBJECT_VERSION), _TREE_HEAD.pack(len(group)),
                     *(_CHUNK_REF.pack(n, cid) for n, cid in group)])


def parse_chunk_list(data: bytes | memoryview) -> tuple[tuple[int, bytes], ...]:
    pos = _header(data, CHUNK_LIST_MAGIC, "chunk list")
    if len(data) < pos + 4:
        raise CorruptObjectError("chunk list object is truncated")
    (count,) = _TREE_HEAD.unpack_from(data, pos)
    pos += 4
    if count == 0 or count > LIST_MAX or len(data) != pos + count * _CHUNK_REF.size:
        raise CorruptObjectError(f"chunk list declares {count} chunks but has {len(data)} bytes")
    refs = tuple(_CHUNK_REF.iter_unpack(bytes(data[pos:])))
    if any(n == 0 for n, _ in refs):
        raise CorruptObjectError("chunk list has a chunk of length 0")
    return refs


@dataclass(frozen=True, slots=True)
class ManifestHead:
    """A manifest object as stored: flat chunk refs, or refs to chunk lists."""

    size: int
    digest: bytes
    layout: int
    entries: tuple[tuple[int, bytes], ...] | tuple[tuple[int, int, bytes], ...]

    @classmethod
    def parse(cls, data: bytes | memoryview) -> ManifestHead:
        if len(data) == _ONE_CHUNK_SIZE:
            # the common case (a small file: one chunk), checked in full without the
            # general path's per-entry work
            raw = bytes(data)
            if raw[:8] == _SMALL_PREFIX and raw[48:56] == _ONE_CHUNK:
                size, digest, _layout, n, cid = _ONE_CHUNK_BODY.unpack_from(raw, 8)
                if n == size and n:
                    return cls(size, digest, LAYOUT_FLAT, ((n, cid),))
        pos = _header(data, MANIFEST_MAGIC, "manifest")
        if len(data) < pos + _MANIFEST_HEAD.size + _MANIFEST_LAYOUT.size:
            raise CorruptObjectError("manifest object is truncated before its entries")
        size, digest = struct.unpack_from("<Q32s", data, pos)
        pos += 40
        layout, count = _MANIFEST_LAYOUT.unpack_from(data, pos)
        if bytes(data[pos + 1:pos + 4]) != b"\0\0\0":
            raise CorruptObjectError("manifest has non-zero reserved bytes")
        pos += _MANIFEST_LAYOUT.size
        ref = {LAYOUT_FLAT: _CHUNK_REF, LAYOUT_LISTS: _LIST_REF}.get(layout)
        if ref is None:
            raise CorruptObjectError(f"manifest has unknown layout {layout}")
        expected = pos + count * ref.size
        if len(data) != expected:
            raise CorruptObjectError(
                f"manifest declares {count} entries ({expected} bytes) but has {len(data)} bytes"
            )
        entries = tuple(ref.iter_unpack(bytes(data[pos:])))
        total = sum(e[0] for e in entries)
        if total != size:
            raise CorruptObjectError(
                f"manifest entry lengths add up to {total} but the file size is {size}"
            )
        if any(e[0] == 0 for e in entries):
            raise CorruptObjectError("manifest has an entry of length 0")
        if layout == LAYOUT_FLAT and count > FLAT_LIMIT:
            raise CorruptObjectError(f"flat manifest has {count} chunks (limit {FLAT_LIMIT})")
        if layout == LAYOUT_LISTS and (count == 0 or sum(e[1] for e in entries) <= FLAT_LIMIT):  # type: ignore[misc]
            raise CorruptObjectError("two-level manifest for a file that needs none")
        return cls(size, digest, layout, entries)


_SMALL_PREFIX = _HEADER.pack(MANIFEST_MAGIC, OBJECT_VERSION)
_NO_CHUNKS = _MANIFEST_LAYOUT.pack(LAYOUT_FLAT, 0)
_ONE_CHUNK = _MANIFEST_LAYOUT.pack(LAYOUT_FLAT, 1)
_ONE_CHUNK_BODY = struct.Struct("<Q32s8sI32s")
_ONE_CHUNK_SIZE = _HEADER.size + _MANIFEST_HEAD.size + _MANIFEST_LAYOUT.size + _CHUNK_REF.size


@dataclass(frozen=True)
class Manifest:
    """A file's content: total size, whole-file BLAKE3 and its chunks in order.

    ``chunks`` is a tuple of ``(length, chunk_id)``: the logical, flat view. How it is
    stored (one object, or a head plus chunk lists) is decided by ``objects()``.
    """

    size: int
    digest: bytes
    chunks: tuple[tuple[int, bytes], ...]

    def objects(self) -> list[tuple[int, bytes, bytes]]:
        """The stored objects ``(kind, id, bytes)``, chunk lists first, head last."""
        # cached by hand: functools.cached_property takes a lock on every access, which
        # costs more than the work for a small file
        cache = self.__dict__
        objs = cache.get("_objects")
        if objs is None:
            objs = cache["_objects"] = self._build_objects()
        return objs  # type: ignore[no-any-return]

    def _build_objects(self) -> list[tuple[int, bytes, bytes]]:
        head = [_HEADER.pack(MANIFEST_MAGIC, OBJECT_VERSION), struct.pack("<Q32s", self.size, self.digest)]
        out: list[tuple[int, bytes, bytes]] = []
        if len(self.chunks) <= FLAT_LIMIT:
            head.append(_MANIFEST_LAYOUT.pack(LAYOUT_FLAT, len(self.chunks)))
            head.extend(_CHUNK_REF.pack(n, cid) for n, cid in self.chunks)
        else:
            groups = split_chunk_lists(self.chunks)
            head.append(_MANIFEST_LAYOUT.pack(LAYOUT_LISTS, len(groups)))
            for group in groups:
                data = encode_chunk_list(group)
                lid = object_id(KIND_CHUNK_LIST, data)
                out.append((KIND_CHUNK_LIST, lid, data))
                head.append(_LIST_REF.pack(sum(n for n, _ in group), len(group), lid))
        data = b"".join(head)
        out.append((KIND_MANIFEST, object_id(KIND_MANIFEST, data), data))
        return out

    @staticmethod
    def encode_small(size: int, digest: bytes, cid: bytes | None) -> bytes:
        """The head of a flat manifest with at most one chunk (``cid`` None: empty
        file): the same bytes ``objects()`` produces, without building a Manifest (the
        fast path of adding many small files)."""
        if cid is None:
            return _SMALL_PREFIX + struct.pack("<Q32s", size, digest) + _NO_CHUNKS
        return (_SMALL_PREFIX + struct.pack("<Q32s", size, digest) + _ONE_CHUNK
                + _CHUNK_REF.pack(size, cid))

    def encode(self) -> bytes:
        """Bytes of the head object (what the manifest id names)."""
        return self.objects()[-1][2]

    def object_id(self) -> bytes:
        return self.objects()[-1][1]

    @classmethod
    def parse(cls, data: bytes | memoryview, load_list=None) -> Manifest:  # type: ignore[no-untyped-def]
        """Parse a head; ``load_list(id) -> bytes`` fetches chunk lists when needed."""
        head = ManifestHead.parse(data)
        if head.layout == LAYOUT_FLAT:
            return cls(head.size, head.digest, head.entries)  # type: ignore[arg-type]
        if load_list is None:
            raise CorruptObjectError("two-level manifest needs its chunk lists to be read")
        chunks: list[tuple[int, bytes]] = []
        for length, count, lid in head.entries:  # type: ignore[misc]
            group = parse_chunk_list(load_list(lid))
            if len(group) != count or sum(n for n, _ in group) != length:
                raise CorruptObjectError(f"chunk list {lid.hex()} does not match its manifest entry")
            chunks.extend(group)
        manifest = cls(head.size, head.digest, tuple(chunks))
        if split_chunk_lists(manifest.chunks) and manifest.object_id() != object_id(KIND_MANIFEST, data):
            raise CorruptObjectError("manifest chunk lists are not split canonically")
        return manifest


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One name in a tree. ``oid`` is a manifest id (file), tree id (tree) or None (link)."""

    name: str
    kind: int
    size: int
    files: int
    oid: bytes | None = None
    executable: bool = False
    target: str | None = None  # symlink target, links only

    def encode(self) -> bytes:
        name = self.name.encode("utf-8")
        head = _ENTRY_HEAD.pack(self.kind, MODE_EXEC if self.executable else 0, len(name))
        sizes = _ENTRY_SIZES.pack(self.size, self.files)
        if self.kind == ENTRY_LINK:
            target = (self.target or "").encode("utf-8")
            return head + name + sizes + _LINK_LEN.pack(len(target)) + target
        assert self.oid is not None
        return head + name + sizes + self.oid


def check_name(name: str) -> None:
    """A tree entry name: one path component, valid UTF-8, no NUL."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise CorruptObjectError(f"invalid name in tree: {name!r}")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME:
        raise CorruptObjectError(f"name longer than {MAX_NAME} bytes in tree: {name[:40]!r}...")


@dataclass(frozen=True, slots=True)
class Tree:
    """A directory: entries sorted by the UTF-8 bytes of their names, names unique."""

    entries: tuple[TreeEntry, ...] = field(default_factory=tuple)

    @classmethod
    def build(cls, entries: list[TreeEntry]) -> Tree:
        entries = sorted(entries, key=lambda e: e.name.encode("utf-8"))
        return cls(tuple(entries))

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries if e.kind != ENTRY_LINK)

    @property
    def files(self) -> int:
        return sum(e.files for e in self.entries)

    def encode(self) -> bytes:
        parts = [_HEADER.pack(TREE_MAGIC, OBJECT_VERSION), _TREE_HEAD.pack(len(self.entries))]
        parts.extend(e.encode() for e in self.entries)
        return b"".join(parts)

    def object_id(self) -> bytes:
        return object_id(KIND_TREE, self.encode())

    @classmethod
    def parse(cls, data: bytes | memoryview) -> Tree:
        return cls(tuple(_parse_tree(data, True)))

    @staticmethod
    def check(data: bytes | memoryview) -> None:
        """Everything ``parse`` checks, without building the entries (``fsck``)."""
        _parse_tree(data, False)


TreeRow = tuple[str, int, int, int, "bytes | None", bool, "str | None"]
_SIZES_ID = struct.Struct("<QQ32s")  # a file or tree entry after its name: size, file count, id


def _parse_tree(data: bytes | memoryview, build: bool) -> list[TreeEntry]:
    rows = tree_rows(data)
    return [TreeEntry(*row) for row in rows] if build else []  # type: ignore[misc]


def tree_rows_reference(data: bytes | memoryview) -> list[TreeRow]:
    """Parse and check a tree (format.md §4) into plain rows ``(name, kind, size,
    files, id, executable, link target)``, the fields of ``TreeEntry`` in order:
    every check of ``Tree.parse``, without an object per entry (listing a directory
    of 100,000 files is the read API's hot path). The pure-Python reference of
    ``dvx._trees.tree_rows`` (same rows, same errors; ``tree_rows`` is whichever is
    built)."""
    data = bytes(data)
    pos = _header(data, TREE_MAGIC, "tree")
    if len(data) < pos + 4:
        raise CorruptObjectError("tree object is truncated before its entry count")
    (count,) = _TREE_HEAD.unpack_from(data, pos)
    pos += 4
    rows: list[TreeRow] = []
    append = rows.append
    head, n_head = _ENTRY_HEAD.unpack_from, _ENTRY_HEAD.size
    sizes_id, n_sizes_id = _SIZES_ID.unpack_from, _SIZES_ID.size
    sizes, n_sizes = _ENTRY_SIZES.unpack_from, _ENTRY_SIZES.size
    prev = b""
    end = len(data)
    i = 0
    try:
        for i in range(count):
            if pos + n_head > end:
                raise CorruptObjectError(f"tree entry {i} extends beyond tree length {end}")
            kind, mode, name_len = head(data, pos)
            pos += n_head
            raw_name = data[pos:pos + name_len]
            pos += name_len
            if kind in (ENTRY_FILE, ENTRY_TREE):
                if mode and (mode != MODE_EXEC or kind != ENTRY_FILE):
                    raise CorruptObjectError(f"tree entry {i} has invalid mode flags {mode:#x}")
                if pos + n_sizes_id > end:
                    raise CorruptObjectError(f"tree entry {i} extends beyond tree length {end}")
                size, files, oid = sizes_id(data, pos)
                pos += n_sizes_id
                if kind == ENTRY_FILE and files != 1:
                    raise CorruptObjectError(f"file entry {raw_name!r} has file count {files}")
                target = None
            elif kind == ENTRY_LINK:
                if mode:
                    raise CorruptObjectError(f"tree entry {i} has invalid mode flags {mode:#x}")
                if pos + n_sizes + 2 > end:
                    raise CorruptObjectError(f"tree entry {i} extends beyond tree length {end}")
                size, files = sizes(data, pos)
                pos += n_sizes
                (tlen,) = _LINK_LEN.unpack_from(data, pos)
                pos += 2
                raw_target = data[pos:pos + tlen]
                pos += tlen
                if len(raw_target) != tlen or tlen == 0:
                    raise CorruptObjectError(f"tree entry {i} has a bad link target")
                try:
                    target = raw_target.decode("utf-8")
                except UnicodeDecodeError:
                    raise CorruptObjectError(f"link target of {raw_name!r} is not UTF-8") from None
                if size != tlen or files != 0:
                    raise CorruptObjectError(f"link entry {raw_name!r} has inconsistent sizes")
                oid = None
            else:
                raise CorruptObjectError(f"tree entry {i} has unknown kind {kind}")
            if len(raw_name) != name_len:
                raise CorruptObjectError(f"tree entry {i} extends beyond tree length {end}")
            if raw_name <= prev:
                if not raw_name:
                    raise CorruptObjectError(f"invalid name in tree: {raw_name!r}")
                raise CorruptObjectError(f"tree entries are not sorted and unique at {raw_name!r}")
            prev = raw_name
            name = raw_name.decode("utf-8")
            if name_len > MAX_NAME or "/" in name or "\0" in name or name == "." or name == "..":
                check_name(name)  # raises, naming the problem
            append((name, kind, size, files, oid, mode == MODE_EXEC, target))
    except UnicodeDecodeError:
        raise CorruptObjectError(f"tree entry {i} name is not UTF-8") from None
    except struct.error:  # pragma: no cover - every length is checked first
        raise CorruptObjectError(f"tree entry {i} extends beyond tree length {end}") from None
    if pos != end:
        raise CorruptObjectError(f"tree has {end - pos} trailing bytes after {count} entries")
    return rows


try:
    from dvx._trees import tree_rows as _tree_rows_c  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - the extension was not built
    _tree_rows_c = None

tree_rows: Callable[[bytes | memoryview], list[TreeRow]] = (
    tree_rows_reference if _tree_rows_c is None else _tree_rows_c)
"""Parse and check a tree into rows: ``dvx._trees.tree_rows`` (Cython) when built,
else ``tree_rows_reference``."""


def encode_tree_items(items: Sequence[tuple[str, int, int, int, int, bytes | str]]) -> tuple[bytes, bytes]:
    """Encode a tree from ``(name, kind, exec, size, files, id or link target)`` items
    already sorted by the UTF-8 bytes of their names (as directory scans list them):
    the same bytes as ``Tree.build(...).encode()`` without an object per entry (the
    path of ``dvx add``/``status`` over many files). Returns ``(data, tree id)``."""
    parts = [_HEADER.pack(TREE_MAGIC, OBJECT_VERSION), _TREE_HEAD.pack(len(items))]
    head, sizes, link_len = _ENTRY_HEAD.pack, _ENTRY_SIZES.pack, _LINK_LEN.pack
    for name, kind, exe, size, files, ref in items:
        raw = name.encode("utf-8", "surrogateescape")
        if kind == ENTRY_LINK:
            target = ref.encode("utf-8", "surrogateescape")  # type: ignore[union-attr]
            parts.append(head(kind, 0, len(raw)) + raw + sizes(len(target), 0) + link_len(len(target)) + target)
        else:
            parts.append(head(kind, MODE_EXEC if exe else 0, len(raw)) + raw + sizes(size, files) + ref)  # type: ignore[operator]
    data = b"".join(parts)
    return data, object_id(KIND_TREE, data)


def tree_refs(data: bytes | memoryview) -> list[tuple[str, int, bytes | None]]:
    """``(name, kind, id)`` of each entry of a tree that was already verified and parsed
    (``fsck``'s reachability walk after its full check of every object): the ids
    without building a ``Tree``. Never use it on unverified bytes."""
    out: list[tuple[str, int, bytes | None]] = []
    (count,) = _TREE_HEAD.unpack_from(data, _HEADER.size)
    pos = _HEADER.size + 4
    raw = bytes(data)
    head, n_head, n_sizes = _ENTRY_HEAD.unpack_from, _ENTRY_HEAD.size, _ENTRY_SIZES.size
    for _ in range(count):
        kind, _mode, name_len = head(raw, pos)
        pos += n_head
        name = raw[pos:pos + name_len].decode("utf-8")
        pos += name_len + n_sizes
        if kind == ENTRY_LINK:
            (tlen,) = _LINK_LEN.unpack_from(raw, pos)
            pos += 2 + tlen
            out.append((name, kind, None))
        else:
            out.append((name, kind, raw[pos:pos + ID_SIZE]))
            pos += ID_SIZE
    return out
