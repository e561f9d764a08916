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
from dataclasses import dataclass, field

from dvx.errors import CorruptObjectError
from dvx.hashing import ID_SIZE, KIND_MANIFEST, KIND_TREE, object_id

MANIFEST_MAGIC = b"DVXM"
TREE_MAGIC = b"DVXT"
OBJECT_VERSION = 1

_HEADER = struct.Struct("<4sB3x")  # magic, version, 3 reserved zero bytes
_MANIFEST_HEAD = struct.Struct("<Q32sI")  # size, file digest, chunk count
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


@dataclass(frozen=True, slots=True)
class Manifest:
    """A file's content: total size, whole-file BLAKE3 and its chunks in order.

    ``chunks`` is a tuple of ``(length, chunk_id)``.
    """

    size: int
    digest: bytes
    chunks: tuple[tuple[int, bytes], ...]

    def encode(self) -> bytes:
        parts = [_HEADER.pack(MANIFEST_MAGIC, OBJECT_VERSION),
                 _MANIFEST_HEAD.pack(self.size, self.digest, len(self.chunks))]
        parts.extend(_CHUNK_REF.pack(n, cid) for n, cid in self.chunks)
        return b"".join(parts)

    def object_id(self) -> bytes:
        return object_id(KIND_MANIFEST, self.encode())

    def check(self) -> None:
        if len(self.digest) != ID_SIZE:
            raise CorruptObjectError(f"manifest digest has {len(self.digest)} bytes, not 32")
        total = 0
        for n, cid in self.chunks:
            if n <= 0:
                raise CorruptObjectError(f"manifest has a chunk of length {n}")
            if len(cid) != ID_SIZE:
                raise CorruptObjectError(f"manifest chunk id has {len(cid)} bytes, not 32")
            total += n
        if total != self.size:
            raise CorruptObjectError(
                f"manifest chunk lengths add up to {total} but the file size is {self.size}"
            )

    @classmethod
    def parse(cls, data: bytes | memoryview) -> Manifest:
        pos = _header(data, MANIFEST_MAGIC, "manifest")
        if len(data) < pos + _MANIFEST_HEAD.size:
            raise CorruptObjectError("manifest object is truncated before its chunk list")
        size, digest, count = _MANIFEST_HEAD.unpack_from(data, pos)
        pos += _MANIFEST_HEAD.size
        expected = pos + count * _CHUNK_REF.size
        if len(data) != expected:
            raise CorruptObjectError(
                f"manifest declares {count} chunks ({expected} bytes) but has {len(data)} bytes"
            )
        chunks = tuple(_CHUNK_REF.iter_unpack(bytes(data[pos:])))
        manifest = cls(size, digest, chunks)
        manifest.check()
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
        data = bytes(data)
        pos = _header(data, TREE_MAGIC, "tree")
        if len(data) < pos + 4:
            raise CorruptObjectError("tree object is truncated before its entry count")
        (count,) = _TREE_HEAD.unpack_from(data, pos)
        pos += 4
        entries: list[TreeEntry] = []
        prev: bytes | None = None
        end = len(data)
        for i in range(count):
            if pos + _ENTRY_HEAD.size > end:
                raise CorruptObjectError(f"tree entry {i} extends beyond tree length {end}")
            kind, mode, name_len = _ENTRY_HEAD.unpack_from(data, pos)
            pos += _ENTRY_HEAD.size
            if kind not in ENTRY_KIND_NAMES:
                raise CorruptObjectError(f"tree entry {i} has unknown kind {kind}")
            if mode & ~MODE_EXEC or (mode and kind != ENTRY_FILE):
                raise CorruptObjectError(f"tree entry {i} has invalid mode flags {mode:#x}")
            raw_name = data[pos:pos + name_len]
            pos += name_len
            if len(raw_name) != name_len or pos + _ENTRY_SIZES.size > end:
                raise CorruptObjectError(f"tree entry {i} extends beyond tree length {end}")
            if prev is not None and raw_name <= prev:
                raise CorruptObjectError(f"tree entries are not sorted and unique at {raw_name!r}")
            prev = raw_name
            try:
                name = raw_name.decode("utf-8")
            except UnicodeDecodeError:
                raise CorruptObjectError(f"tree entry {i} name is not UTF-8: {raw_name!r}") from None
            check_name(name)
            size, files = _ENTRY_SIZES.unpack_from(data, pos)
            pos += _ENTRY_SIZES.size
            if kind == ENTRY_LINK:
                if pos + 2 > end:
                    raise CorruptObjectError(f"tree entry {i} extends beyond tree length {end}")
                (tlen,) = _LINK_LEN.unpack_from(data, pos)
                pos += 2
                raw_target = data[pos:pos + tlen]
                pos += tlen
                if len(raw_target) != tlen or tlen == 0:
                    raise CorruptObjectError(f"tree entry {i} has a bad link target")
                try:
                    target = raw_target.decode("utf-8")
                except UnicodeDecodeError:
                    raise CorruptObjectError(f"link target of {name!r} is not UTF-8") from None
                if size != tlen or files != 0:
                    raise CorruptObjectError(f"link entry {name!r} has inconsistent sizes")
                entries.append(TreeEntry(name, kind, size, 0, None, False, target))
            else:
                oid = data[pos:pos + ID_SIZE]
                pos += ID_SIZE
                if len(oid) != ID_SIZE:
                    raise CorruptObjectError(f"tree entry {i} extends beyond tree length {end}")
                if kind == ENTRY_FILE and files != 1:
                    raise CorruptObjectError(f"file entry {name!r} has file count {files}")
                entries.append(TreeEntry(name, kind, size, files, oid, bool(mode & MODE_EXEC)))
        if pos != end:
            raise CorruptObjectError(f"tree has {end - pos} trailing bytes after {count} entries")
        return cls(tuple(entries))
