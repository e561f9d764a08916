"""Object ids: BLAKE3-256 with explicit domain separation (``protocols/format.md`` §2, §5).

Each object kind hashes its canonical bytes in BLAKE3 ``derive_key`` mode with its own
context string, so bytes of one kind can never collide with an id of another kind. The
whole-file digest is plain (unkeyed) BLAKE3, identical to what ``b3sum`` prints.

This module is the only place that names a context string or passes
``derive_key_context`` (``tests/test_canon.py`` checks it): every id DVX computes or
verifies goes through the functions below.
"""

from __future__ import annotations

from blake3 import blake3

CHUNK_CONTEXT = "dvx 2026-11 chunk v1"
MANIFEST_CONTEXT = "dvx 2026-11 manifest v1"
TREE_CONTEXT = "dvx 2026-11 tree v1"
CHUNK_LIST_CONTEXT = "dvx 2026-11 chunklist v1"
PACK_NAME_CONTEXT = "dvx 2026-11 pack v1"  # names packs (§5); not an object kind

ID_SIZE = 32
HEX_SIZE = 64

KIND_CHUNK = 1
KIND_MANIFEST = 2
KIND_TREE = 3
KIND_CHUNK_LIST = 4

KIND_NAMES = {KIND_CHUNK: "chunk", KIND_MANIFEST: "manifest", KIND_TREE: "tree",
              KIND_CHUNK_LIST: "chunk list"}
CONTEXTS = {KIND_CHUNK: CHUNK_CONTEXT, KIND_MANIFEST: MANIFEST_CONTEXT, KIND_TREE: TREE_CONTEXT,
            KIND_CHUNK_LIST: CHUNK_LIST_CONTEXT}


def chunk_id(data: bytes | bytearray | memoryview) -> bytes:
    return blake3(data, derive_key_context=CHUNK_CONTEXT).digest()


def manifest_id(data: bytes | bytearray | memoryview) -> bytes:
    return blake3(data, derive_key_context=MANIFEST_CONTEXT).digest()


def object_id(kind: int, data: bytes | bytearray | memoryview) -> bytes:
    return blake3(data, derive_key_context=CONTEXTS[kind]).digest()


def id_matches(kind: int, data: bytes | bytearray | memoryview, oid: bytes) -> bool:
    """True when ``data`` hashes to ``oid`` as an object of ``kind`` (verification of
    every read, §7.4); False for a kind this DVX does not know."""
    context = CONTEXTS.get(kind)
    return context is not None and blake3(data, derive_key_context=context).digest() == oid


def pack_name(entries_blob: bytes | bytearray | memoryview) -> str:
    """A pack's name: BLAKE3 of its footer entries under the pack context, in hex."""
    return blake3(entries_blob, derive_key_context=PACK_NAME_CONTEXT).hexdigest()


def file_digest(data: bytes | bytearray | memoryview) -> bytes:
    """Plain BLAKE3 (what ``b3sum`` prints)."""
    return blake3(data).digest()


def new_file_hasher() -> blake3:
    return blake3(max_threads=blake3.AUTO)


def is_hex_id(text: str) -> bool:
    """Exactly 64 lowercase hex digits (``bytes.fromhex`` alone would accept spaces)."""
    return len(text) == HEX_SIZE and not text.strip("0123456789abcdef")
