"""One place for each canonical rule (issue 9, item 4).

* every BLAKE3 call with a derive-key context goes through ``dvx/hashing.py``;
* one hand-written validator for pointers and config, which accepts exactly the valid
  ones and raises only ``PointerError``/``ConfigError`` on anything else;
* the chunker defaults are defined once;
* config edits keep comments, order and formatting byte for byte.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dvx

DVX_DIR = Path(dvx.__file__).resolve().parent


def _modules() -> list[Path]:
    return sorted(DVX_DIR.rglob("*.py"))


# -- hashing ---------------------------------------------------------------------------

def test_only_hashing_passes_a_derive_key_context() -> None:
    offenders = []
    for path in _modules():
        if path.name == "hashing.py" and path.parent == DVX_DIR:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "derive_key_context":
                offenders.append(f"{path.relative_to(DVX_DIR.parent)}:{node.value.lineno}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value.startswith("dvx 2026-11 "):
                offenders.append(f"{path.relative_to(DVX_DIR.parent)}:{node.lineno} (context string)")
    assert not offenders, "derive-key contexts outside dvx/hashing.py: " + ", ".join(offenders)


def test_pack_name_and_id_matches() -> None:
    from blake3 import blake3

    from dvx import hashing

    assert hashing.pack_name(b"x") == blake3(b"x", derive_key_context="dvx 2026-11 pack v1").hexdigest()
    for kind in hashing.CONTEXTS:
        oid = hashing.object_id(kind, b"data")
        assert hashing.id_matches(kind, b"data", oid)
        assert not hashing.id_matches(kind, b"datA", oid)
        assert not any(hashing.id_matches(other, b"data", oid) for other in hashing.CONTEXTS if other != kind)
    assert not hashing.id_matches(99, b"data", hashing.chunk_id(b"data"))
    assert hashing.manifest_id(b"m") == hashing.object_id(hashing.KIND_MANIFEST, b"m")
