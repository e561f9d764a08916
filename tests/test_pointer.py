"""Pointer files: rendering, strict parsing, version gate, extension fields."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvx.errors import DvxError, FormatVersionError, PointerError
from dvx.pointer import Pointer, parse_pointer

ID = "ab" * 32
B3 = "cd" * 32


def test_render_and_parse_round_trip() -> None:
    p = Pointer(dvx=1, kind="file", id=ID, size=10, files=1, b3=B3, exec=True)
    text = p.render()
    assert "exec: true" in text and text.endswith("\n")
    assert parse_pointer(text, "x.dvx") == p
    t = Pointer(dvx=1, kind="tree", id=ID, size=10, files=3)
    assert parse_pointer(t.render(), "d.dvx") == t
    assert "exec" not in t.render() and "b3" not in t.render()


def test_extension_fields_are_ignored() -> None:
    text = Pointer(dvx=1, kind="tree", id=ID, size=1, files=1).render() + "x-note: hello\n"
    assert parse_pointer(text, "d.dvx").files == 1


@pytest.mark.parametrize("text,match", [
    ("", "no 'dvx:' version"),
    ("garbage\n", "expected 'key: value'"),
    (f"dvx: 1\nkind: file\nid: {ID}\nsize: 1\nfiles: 1\n", "b3"),
    (f"dvx: 1\nkind: blob\nid: {ID}\nsize: 1\nfiles: 1\n", "kind"),
    (f"dvx: 1\nkind: tree\nid: {ID[:-1]}\nsize: 1\nfiles: 1\n", "hex"),
    (f"dvx: 1\nkind: tree\nid: {ID.upper()}\nsize: 1\nfiles: 1\n", "hex"),
    (f"dvx: 1\nkind: tree\nid: {ID}\nsize: -1\nfiles: 1\n", "whole number"),
    (f"dvx: 1\nkind: tree\nid: {ID}\nsize: 1\nfiles: 1\ncolour: red\n", "colour"),
    (f"dvx: 1\ndvx: 1\nkind: tree\nid: {ID}\nsize: 1\nfiles: 1\n", "duplicate"),
])
def test_malformed_pointers(text: str, match: str) -> None:
    with pytest.raises(PointerError, match=match):
        parse_pointer(text, "bad.dvx")


def test_unknown_version_refused() -> None:
    with pytest.raises(FormatVersionError, match="pointer format 2"):
        parse_pointer(f"dvx: 2\nkind: tree\nid: {ID}\nsize: 1\nfiles: 1\n", "new.dvx")


def test_binary_and_oversized() -> None:
    with pytest.raises(PointerError, match="UTF-8"):
        parse_pointer(b"\xff\xfe\x00", "b.dvx")
    with pytest.raises(PointerError, match="too large"):
        parse_pointer(b"a" * 70000, "b.dvx")


@settings(max_examples=300)
@given(st.text(max_size=400) | st.binary(max_size=400))
def test_any_input_only_raises_dvx_errors(data: str | bytes) -> None:
    with contextlib.suppress(DvxError):
        parse_pointer(data, "fuzz.dvx")


def test_a_bad_pointer_in_history_gets_a_hint_that_works() -> None:
    # `git checkout -- REV:PATH` is no git command; a pointer read at a revision is named so
    with pytest.raises(PointerError) as e:
        parse_pointer(b"\xff\xfe\x00", "0123abcd:data.dvx")
    assert "git show 0123abcd:data.dvx" in (e.value.hint or "") and "checkout" not in (e.value.hint or "")
    with pytest.raises(PointerError) as e:
        parse_pointer(b"\xff\xfe\x00", "data.dvx")
    assert "git checkout -- data.dvx" in (e.value.hint or "")
