"""The Cython tree parser (``dvx._trees``) against its pure-Python reference
(``dvx.objects.tree_rows_reference``): the same rows from every valid tree, and the
same error (same message) from every invalid one, including hostile mutations of valid
trees. ``ls_entries`` (a listing's inner loop) against ``dvx.ops.ls``'s Python loop."""

from __future__ import annotations

import gc
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvx.errors import CorruptObjectError
from dvx.objects import (
    ENTRY_FILE,
    ENTRY_LINK,
    ENTRY_TREE,
    MAX_NAME,
    Tree,
    TreeEntry,
    tree_rows,
    tree_rows_reference,
)
from dvx.ops.ls import LsEntry, _add_entries, _gc_paused
from tests.conftest import VECTORS
from tests.test_objects import trees

try:
    from dvx import _trees  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - fails test_the_extension_is_built_and_used
    _trees = None

V = json.loads((VECTORS / "objects.json").read_text())


def test_the_extension_is_built_and_used() -> None:
    assert _trees is not None, "the Cython tree parser must be built (setup.py build_ext --inplace)"
    assert tree_rows is _trees.tree_rows


def outcome(parse, data: bytes):  # type: ignore[no-untyped-def]
    """What a parser makes of ``data``: its rows, or the error it raises (class and
    message); any other exception fails the test."""
    try:
        return ("rows", parse(data))
    except CorruptObjectError as exc:
        return ("error", str(exc), getattr(exc, "hint", None))


def same(data: bytes) -> tuple:
    ref = outcome(tree_rows_reference, data)
    fast = outcome(_trees.tree_rows, data)
    assert fast == ref, data.hex()
    assert outcome(_trees.tree_rows, memoryview(data)) == ref
    return ref


def test_vectors_parse_identically() -> None:
    for t in V["trees"]:
        got = same(bytes.fromhex(t["encoding_hex"]))
        assert got[0] == "rows"
        assert [TreeEntry(*r) for r in got[1]] == list(Tree.parse(bytes.fromhex(t["encoding_hex"])).entries)


@pytest.mark.parametrize("hexdata", V["invalid_trees_hex"])
def test_invalid_vectors_are_refused_with_the_same_message(hexdata: str) -> None:
    assert same(bytes.fromhex(hexdata))[0] == "error"


def entry(kind: int, name: bytes, mode: int = 0, size: int = 1, files: int = 1,
          ref: bytes = b"\1" * 32) -> bytes:
    return struct.pack("<BBH", kind, mode, len(name)) + name + struct.pack("<QQ", size, files) + ref


def tree(*entries: bytes, count: int | None = None) -> bytes:
    return b"DVXT\1\0\0\0" + struct.pack("<I", len(entries) if count is None else count) + b"".join(entries)


def link(name: bytes, target: bytes, size: int | None = None, files: int = 0, mode: int = 0) -> bytes:
    return (struct.pack("<BBH", ENTRY_LINK, mode, len(name)) + name
            + struct.pack("<QQH", len(target) if size is None else size, files, len(target)) + target)


HOSTILE = {
    "empty": b"",
    "short header": b"DVXT\1",
    "bad magic": b"DVXM\1\0\0\0\0\0\0\0",
    "version 2": b"DVXT\2\0\0\0\0\0\0\0",
    "reserved bytes": b"DVXT\1\0\1\0\0\0\0\0",
    "no count": b"DVXT\1\0\0\0\0\0",
    "count past the end": tree(count=3),
    "trailing bytes": tree() + b"x",
    "name past the end": tree()[:-4] + struct.pack("<I", 1) + struct.pack("<BBH", 1, 0, 200) + b"abc",
    "head past the end": tree(count=1) + b"\1\0",
    "unknown kind": tree(entry(7, b"a")),
    "kind zero": tree(entry(0, b"a")),
    "exec tree": tree(entry(ENTRY_TREE, b"a", mode=1, files=5)),
    "mode 2 file": tree(entry(ENTRY_FILE, b"a", mode=2)),
    "file count 2": tree(entry(ENTRY_FILE, b"a", files=2)),
    "file count 0": tree(entry(ENTRY_FILE, b"a", files=0)),
    "id cut short": tree(entry(ENTRY_FILE, b"a"))[:-1],
    "unsorted": tree(entry(ENTRY_FILE, b"b"), entry(ENTRY_FILE, b"a")),
    "duplicate": tree(entry(ENTRY_FILE, b"a"), entry(ENTRY_FILE, b"a")),
    "prefix after longer": tree(entry(ENTRY_FILE, b"ab"), entry(ENTRY_FILE, b"a")),
    "empty name first": tree(entry(ENTRY_FILE, b"")),
    "empty name later": tree(entry(ENTRY_FILE, b"a"), entry(ENTRY_FILE, b"")),
    "dot": tree(entry(ENTRY_FILE, b".")),
    "dotdot": tree(entry(ENTRY_TREE, b"..", files=3)),
    "slash": tree(entry(ENTRY_FILE, b"a/b")),
    "leading slash": tree(entry(ENTRY_FILE, b"/etc")),
    "NUL": tree(entry(ENTRY_FILE, b"a\0b")),
    "not UTF-8": tree(entry(ENTRY_FILE, b"\xff")),
    "surrogate": tree(entry(ENTRY_FILE, "\ud800".encode("utf-8", "surrogatepass"))),
    "overlong UTF-8 slash": tree(entry(ENTRY_FILE, b"\xc0\xaf")),
    "name too long": tree(entry(ENTRY_FILE, b"a" * (MAX_NAME + 1))),
    "name at the limit": tree(entry(ENTRY_FILE, b"a" * MAX_NAME)),
    "link": tree(link(b"l", b"target")),
    "link exec": tree(link(b"l", b"t", mode=1)),
    "link empty target": tree(link(b"l", b"")),
    "link target past the end": tree(link(b"l", b"target"))[:-2],
    "link target not UTF-8": tree(link(b"l", b"\xfe")),
    "link size wrong": tree(link(b"l", b"t", size=5)),
    "link with files": tree(link(b"l", b"t", files=1)),
    "link sizes cut": tree(link(b"l", b"t"))[:-10],
    "dot-dot-dot is a name": tree(entry(ENTRY_FILE, b"...")),
    "unicode names": tree(entry(ENTRY_FILE, "é".encode()), entry(ENTRY_TREE, "日本".encode(), files=9)),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_trees_meet_the_same_checks(name: str) -> None:
    same(HOSTILE[name])


@settings(max_examples=150)
@given(trees())
def test_random_trees_parse_identically(t: Tree) -> None:
    raw = t.encode()
    got = same(raw)
    assert got == ("rows", [(e.name, e.kind, e.size, e.files, e.oid, e.executable, e.target)
                            for e in t.entries])


@settings(max_examples=400)
@given(trees(), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from("xid")),
                         min_size=1, max_size=4))
def test_mutated_trees_meet_the_same_checks(t: Tree, edits: list[tuple[int, int, str]]) -> None:
    """Flip, insert or delete bytes anywhere in a valid tree: both parsers agree on
    the rows or on the exact error."""
    raw = bytearray(t.encode())
    for at, value, op in edits:
        at %= len(raw) + 1
        if op == "x" and at < len(raw):
            raw[at] ^= value or 1
        elif op == "i":
            raw[at:at] = bytes([value])
        elif at < len(raw):
            del raw[at]
    same(bytes(raw))


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_garbage_meets_the_same_checks(data: bytes) -> None:
    same(data)
    same(b"DVXT\1\0\0\0" + data)


# -- ls_entries: a listing's loop ----------------------------------------------------------

def python_listing(raw: bytes, pre: str, recursive: bool) -> tuple[list, list]:
    out: list[LsEntry] = []
    stack: list[tuple[str, bytes]] = []
    _add_entries(tree_rows_reference(raw), pre, recursive, out, stack)
    return out, stack


def c_listing(raw: bytes, pre: str, recursive: bool, cls: object = LsEntry) -> tuple[list, list]:
    out: list = []
    stack: list = []
    _trees.ls_entries(raw, pre, recursive, out, stack, cls)
    return out, stack


@settings(max_examples=150)
@given(trees(), st.booleans(), st.sampled_from(["d", "data/sub", "é/ü"]))
def test_ls_entries_match_the_python_loop(t: Tree, recursive: bool, pre: str) -> None:
    raw = t.encode()
    want = python_listing(raw, pre, recursive)
    got = c_listing(raw, pre, recursive)
    assert got == want
    assert all(type(e) is LsEntry for e in got[0])
    assert [e.to_json() for e in got[0]] == [e.to_json() for e in want[0]]


def test_ls_entries_build_real_entries() -> None:
    raw = HOSTILE["unicode names"]
    (e, sub), _ = c_listing(raw, "top", False)
    assert e == LsEntry("top/é", "file", 1, 1, "01" * 32, False, None)
    assert sub == LsEntry("top/日本/", "tree", 1, 9, "01" * 32, False, None)
    e.size = 7  # an ordinary mutable instance
    assert e.size == 7 and repr(e).startswith("LsEntry(path='top/é'")
    (only,), stack = c_listing(raw, "top", True)
    assert only.path == "top/é" and stack == [("top/日本", b"\1" * 32)]
    (lk,), _ = c_listing(HOSTILE["link"], "t", True)
    assert lk == LsEntry("t/l", "link", 6, 0, None, False, "target")
    del e, sub, only, lk
    gc.collect()


def test_ls_entries_call_any_other_class() -> None:
    @__import__("dataclasses").dataclass
    class Plain:  # no slots: built by calling it
        path: str
        kind: str
        size: int
        files: int
        id: str | None
        executable: bool = False
        target: str | None = None

    raw = HOSTILE["unicode names"]
    (e, _), _ = c_listing(raw, "top", False, Plain)
    assert type(e) is Plain and e.path == "top/é" and e.id == "01" * 32
    (t,), _ = c_listing(raw, "top", True, lambda *a: a)
    assert t == ("top/é", "file", 1, 1, "01" * 32, False, None)
    (e, _), _ = c_listing(raw, "top", False)  # and LsEntry still takes the direct path
    assert type(e) is LsEntry


@pytest.mark.parametrize("name", sorted(k for k in HOSTILE if same(HOSTILE[k])[0] == "error"))
def test_ls_entries_refuse_what_the_reference_refuses_and_add_nothing(name: str) -> None:
    out: list = ["before"]
    stack: list = []
    with pytest.raises(CorruptObjectError) as exc:
        _trees.ls_entries(HOSTILE[name], "d", True, out, stack, LsEntry)
    assert str(exc.value) == same(HOSTILE[name])[1]
    assert out == ["before"] and stack == []


def test_gc_pause_restores_the_collector() -> None:
    assert gc.isenabled()
    with _gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with _gc_paused():
            pass
        assert not gc.isenabled()  # someone else's pause is left as it was
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), _gc_paused():
        raise RuntimeError
    assert gc.isenabled()


# -- end to end: a real repository, its listing at a revision ------------------------------

def test_listing_at_a_revision_is_the_same_on_both_paths(repo_dir, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os

    import dvx
    import dvx.ops.ls as ops_ls
    from dvx.access.source import forget_sources
    from tests.conftest import git, write

    for i in range(30):
        write(repo_dir / "d" / f"sub{i % 3}" / f"f{i:02d}.bin", b"x" * (i * 100))
    write(repo_dir / "d" / "sub1" / "deeper" / "été.csv", "a,b\n")
    write(repo_dir / "d" / "a.b", "dot sorts before slash")
    (repo_dir / "d" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(repo_dir / "d" / "run.sh", 0o755)
    (repo_dir / "d" / "sub0" / "link").symlink_to("f00.bin")
    cli("add", "d")
    cli("commit", "-m", "d")
    git("tag", "v1", cwd=repo_dir)
    (repo_dir / "d" / "a.b").write_text("changed")
    cli("add", "d")

    cases = [("d", "v1"), ("d/sub1", "v1"), ("d/sub1/deeper/été.csv", "v1"), ("d/sub0/link", "v1"),
             ("d", None)]

    def listings() -> list:
        forget_sources()
        return [[e.to_json() for e in dvx.ls(p, rev=r)] for p, r in cases]

    fast = listings()
    built = ops_ls._ls_entries
    monkeypatch.setattr(ops_ls, "_ls_entries", None)
    assert listings() == fast
    monkeypatch.setattr(ops_ls, "_ls_entries", built)
    d = fast[0]
    assert [e["path"] for e in d] == sorted(e["path"] for e in d)
    assert len(d) == 34 and d[0]["path"] == "d/a.b" and d[1]["path"] == "d/run.sh"
    assert {e["path"] for e in fast[1]} == {f"d/sub1/f{i:02d}.bin" for i in range(1, 30, 3)} | {
        "d/sub1/deeper/été.csv"}
    assert [e["path"] for e in fast[2]] == ["d/sub1/deeper/été.csv"]
    assert fast[3] == [{"path": "d/sub0/link", "kind": "link", "size": 7, "files": 0, "id": None,
                        "target": "f00.bin"}]
    assert next(e for e in d if e["path"] == "d/run.sh")["executable"] is True
    assert fast[4] != d  # the work tree's version of d/a.b
    # the CLI prints one line per entry, sizes as before
    lines = cli("ls", "d", "--rev", "v1").output.splitlines()
    assert len(lines) == 34
    assert lines[0].split() == ["file", "22", "B", d[0]["id"][:12], "d/a.b"]
    assert lines[-1].endswith(" d/sub2/f29.bin") and " 2.8 KiB " in lines[-1]
    assert [e["path"] for e in __import__("json").loads(cli("ls", "d", "--rev", "v1", "--json").output)] == \
        [e["path"] for e in d]


def test_ls_at_a_revision_outside_a_repository_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Regression: the error was hidden by an UnboundLocalError of the cleanup."""
    import dvx
    from dvx.errors import NotARepositoryError

    with pytest.raises(NotARepositoryError):
        dvx.ls("d", rev="HEAD", repo=tmp_path)
