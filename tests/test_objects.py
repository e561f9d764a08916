"""Manifests and trees: frozen vectors, round-trips, and strict parsing."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvx.errors import CorruptObjectError, DvxError
from dvx.hashing import KIND_MANIFEST, KIND_TREE, object_id
from dvx.objects import ENTRY_FILE, ENTRY_LINK, ENTRY_TREE, Manifest, Tree, TreeEntry
from tests.conftest import VECTORS

V = json.loads((VECTORS / "objects.json").read_text())


def test_manifest_vectors() -> None:
    for m in V["manifests"]:
        raw = bytes.fromhex(m["encoding_hex"])
        parsed = Manifest.parse(raw)
        assert parsed.encode() == raw
        assert parsed.object_id().hex() == m["id"]
        assert object_id(KIND_MANIFEST, raw).hex() == m["id"]


def test_tree_vectors() -> None:
    for t in V["trees"]:
        raw = bytes.fromhex(t["encoding_hex"])
        parsed = Tree.parse(raw)
        assert parsed.encode() == raw
        assert object_id(KIND_TREE, raw).hex() == t["id"]
    root = Tree.parse(bytes.fromhex(V["trees"][2]["encoding_hex"]))
    names = [e.name for e in root.entries]
    assert names == sorted(names, key=lambda n: n.encode())
    link = next(e for e in root.entries if e.kind == ENTRY_LINK)
    assert link.target == "a.txt"
    assert next(e for e in root.entries if e.name == "run.sh").executable


def test_kinds_are_domain_separated() -> None:
    raw = bytes.fromhex(V["manifests"][0]["encoding_hex"])
    assert object_id(KIND_MANIFEST, raw) != object_id(KIND_TREE, raw)


@pytest.mark.parametrize("hexdata", V["invalid_manifests_hex"])
def test_invalid_manifests(hexdata: str) -> None:
    with pytest.raises(CorruptObjectError):
        Manifest.parse(bytes.fromhex(hexdata))


@pytest.mark.parametrize("hexdata", V["invalid_trees_hex"])
def test_invalid_trees(hexdata: str) -> None:
    with pytest.raises(CorruptObjectError):
        Tree.parse(bytes.fromhex(hexdata))


def test_unsorted_tree_rejected() -> None:
    a = TreeEntry("b", ENTRY_FILE, 1, 1, b"\1" * 32)
    b = TreeEntry("a", ENTRY_FILE, 1, 1, b"\2" * 32)
    raw = Tree((a, b)).encode()  # bypasses Tree.build's sorting
    with pytest.raises(CorruptObjectError, match="sorted"):
        Tree.parse(raw)


def test_manifest_lengths_must_add_up() -> None:
    bad = Manifest(10, b"\0" * 32, ((4, b"\1" * 32),)).encode()
    with pytest.raises(CorruptObjectError, match="add up"):
        Manifest.parse(bad)


names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
                min_size=1, max_size=20).filter(lambda s: s not in (".", ".."))
ids = st.binary(min_size=32, max_size=32)


@st.composite
def trees(draw):  # type: ignore[no-untyped-def]
    entries = {}
    for name in draw(st.lists(names, max_size=8, unique=True)):
        kind = draw(st.sampled_from([ENTRY_FILE, ENTRY_TREE, ENTRY_LINK]))
        if kind == ENTRY_FILE:
            entries[name] = TreeEntry(name, kind, draw(st.integers(0, 2**63)), 1, draw(ids),
                                      draw(st.booleans()))
        elif kind == ENTRY_TREE:
            entries[name] = TreeEntry(name, kind, draw(st.integers(0, 2**63)),
                                      draw(st.integers(0, 2**40)), draw(ids))
        else:
            target = draw(names)
            entries[name] = TreeEntry(name, kind, len(target.encode()), 0, None, False, target)
    return Tree.build(list(entries.values()))


@settings(max_examples=100)
@given(trees())
def test_tree_round_trip(tree: Tree) -> None:
    raw = tree.encode()
    assert Tree.parse(raw) == tree
    assert Tree.parse(raw).encode() == raw


@settings(max_examples=100)
@given(st.lists(st.tuples(st.integers(1, 2**32 - 1), ids), max_size=20), ids)
def test_manifest_round_trip(chunks: list[tuple[int, bytes]], digest: bytes) -> None:
    m = Manifest(sum(n for n, _ in chunks), digest, tuple(chunks))
    assert Manifest.parse(m.encode()) == m


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_garbage_only_raises_dvx_errors(data: bytes) -> None:
    for parse in (Manifest.parse, Tree.parse):
        with contextlib.suppress(DvxError):
            parse(data)
    # and valid prefixes with garbage after them
    for prefix in (b"DVXM\x01\0\0\0", b"DVXT\x01\0\0\0"):
        for parse in (Manifest.parse, Tree.parse):
            with contextlib.suppress(DvxError):
                parse(prefix + data)


def test_two_level_manifest_vector() -> None:
    from dvx.hashing import KIND_CHUNK_LIST, chunk_id

    v = V["two_level_manifest"]
    chunks = tuple((1000 + i, chunk_id(i.to_bytes(4, "little"))) for i in range(700))
    m = Manifest(sum(n for n, _ in chunks), bytes.fromhex(v["digest_hex"]), chunks)
    objs = m.objects()
    assert [(k, oid.hex(), data.hex()) for k, oid, data in objs] == \
        [(o["kind"], o["id"], o["encoding_hex"]) for o in v["objects"]]
    assert objs[-1][0] == KIND_MANIFEST and all(k == KIND_CHUNK_LIST for k, _, _ in objs[:-1])
    lists = {oid: data for _, oid, data in objs[:-1]}
    assert Manifest.parse(objs[-1][2], lists.__getitem__) == m
    with pytest.raises(CorruptObjectError, match="chunk lists"):
        Manifest.parse(objs[-1][2])


def test_small_edit_changes_one_chunk_list() -> None:
    from dvx.hashing import chunk_id

    chunks = [(1000, chunk_id(i.to_bytes(4, "little"))) for i in range(5000)]
    before = {oid for _, oid, _ in Manifest(5_000_000, b"\0" * 32, tuple(chunks)).objects()}
    chunks[2500] = (1000, chunk_id(b"edited"))
    after = [oid for _, oid, _ in Manifest(5_000_000, b"\0" * 32, tuple(chunks)).objects()]
    assert len([o for o in after if o not in before]) <= 3  # list(s) around the edit + head


@pytest.mark.parametrize("size", [0, 1, 4096, 16384])
def test_small_manifest_fast_path_matches_general_encoding(size: int) -> None:
    from blake3 import blake3

    from dvx.hashing import chunk_id

    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    general = Manifest(size, blake3(data).digest(), ((size, chunk_id(data)),) if size else ())
    fast = Manifest.encode_small(size, blake3(data).digest(), chunk_id(data) if size else None)
    assert fast == general.encode()
