"""BLAKE3 (the ``blake3`` package DVX hashes with) reproduces the official vectors."""

from __future__ import annotations

import json

import pytest
from blake3 import blake3

from tests.conftest import VECTORS

V = json.loads((VECTORS / "blake3_test_vectors.json").read_text())


def _input(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


@pytest.mark.parametrize("case", V["cases"], ids=lambda c: str(c["input_len"]))
def test_blake3_modes(case: dict) -> None:
    data = _input(case["input_len"])
    n = len(case["hash"]) // 2
    assert blake3(data).hexdigest(length=n) == case["hash"]
    assert blake3(data, key=V["key"].encode()).hexdigest(length=n) == case["keyed_hash"]
    assert blake3(data, derive_key_context=V["context_string"]).hexdigest(length=n) == \
        case["derive_key"]
    # default-length output is the 32-byte prefix
    assert blake3(data).hexdigest() == case["hash"][:64]


def test_threaded_hasher_agrees() -> None:
    data = _input(5_000_000)
    assert blake3(data, max_threads=blake3.AUTO).digest() == blake3(data).digest()
