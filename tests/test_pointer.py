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


_HEX = "0123456789abcdef"
_ids = st.one_of(st.text(_HEX, min_size=64, max_size=64), st.text(_HEX + "AF g", max_size=66), st.integers())
_values = st.fixed_dictionaries(
    {"dvx": st.sampled_from([1, 2, True, "1"]), "kind": st.sampled_from(["file", "tree", "dir", 1]),
     "id": _ids, "size": st.one_of(st.integers(-2, 10**12), st.just(1.0)),
     "files": st.one_of(st.integers(-1, 3), st.just("1"))},
    optional={"b3": st.one_of(st.none(), _ids), "exec": st.sampled_from([True, False, 1, "yes"])},
)


@settings(max_examples=400, deadline=None)
@given(_values)
def test_create_shortcut_never_accepts_what_the_model_refuses(values: dict) -> None:  # type: ignore[type-arg]
    """``Pointer.create`` skips pydantic for plainly valid values; that shortcut must
    agree with the model: everything it accepts, the model accepts unchanged."""
    from pydantic import ValidationError

    from dvx.models import PointerModel
    from dvx.pointer import plainly_valid

    if plainly_valid(values):
        assert Pointer(**PointerModel.model_validate(values).model_dump()) == Pointer.create(**values)
    else:
        with contextlib.suppress(ValidationError):
            Pointer.create(**values)


def test_create_shortcut_covers_what_dvx_writes() -> None:
    from dvx.pointer import plainly_valid

    assert plainly_valid({"dvx": 1, "kind": "file", "id": "a" * 64, "size": 3, "files": 1, "b3": "b" * 64})
    assert plainly_valid({"dvx": 1, "kind": "tree", "id": "a" * 64, "size": 0, "files": 0})
    assert not plainly_valid({"dvx": 1, "kind": "tree", "id": "A" * 64, "size": 0, "files": 0})
    spaced = "a" * 63 + " "
    assert not plainly_valid({"dvx": 1, "kind": "file", "id": spaced, "size": 3, "files": 1, "b3": "b" * 64})
