"""The local store: packs, indexes, verification, crash-safety invariants."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dvx.errors import CorruptObjectError, MissingObjectError, StoreError
from dvx.hashing import KIND_CHUNK, KIND_MANIFEST, chunk_id, object_id
from dvx.store.local import Store
from dvx.store.pack import IdxFile, encode_idx, read_footer
from tests.conftest import VECTORS, pseudo_random


@pytest.fixture
def store(tmp_path: Path) -> Store:
    Store.create(str(tmp_path / "store"))
    return Store(str(tmp_path / "store"))


def test_pack_vector(tmp_path: Path) -> None:
    v = json.loads((VECTORS / "pack.json").read_text())
    p = tmp_path / f"{v['name']}.pack"
    p.write_bytes(bytes.fromhex(v["pack_hex"]))
    entries, name = read_footer(str(p))
    assert name == v["name"]
    assert encode_idx(entries, p.stat().st_size).hex() == v["idx_hex"]


def test_write_read_dedup(store: Store) -> None:
    blobs = [pseudo_random(1000 + i, i) for i in range(50)]
    with store.writer() as w:
        for b in blobs + blobs:  # duplicates are stored once
            w.add(KIND_CHUNK, chunk_id(b), b)
    assert w.objects_written == 50
    assert len(store.pack_names()) == 1
    for b in blobs:
        assert store.read(chunk_id(b), KIND_CHUNK) == b
    with store.writer() as w2:
        for b in blobs:
            assert not w2.add(KIND_CHUNK, chunk_id(b), b)
    assert w2.new_packs == []


def test_packs_roll_over_at_target_size(store: Store) -> None:
    with store.writer(pack_target=10_000) as w:
        for i in range(30):
            b = pseudo_random(1000, i)
            w.add(KIND_CHUNK, chunk_id(b), b)
    assert len(store.pack_names()) >= 3
    assert len(store.full_index()) == 30


def test_corruption_detected_on_read(store: Store) -> None:
    data = pseudo_random(5000, 1)
    with store.writer() as w:
        w.add(KIND_CHUNK, chunk_id(data), data)
    (name,) = store.pack_names()
    path = store.pack_path(name)
    os.chmod(path, 0o644)
    raw = bytearray(Path(path).read_bytes())
    raw[100] ^= 0xFF
    Path(path).write_bytes(bytes(raw))
    fresh = Store(store.path)
    with pytest.raises(CorruptObjectError, match="corrupted"):
        fresh.read(chunk_id(data), KIND_CHUNK)


def test_missing_object_error(store: Store) -> None:
    with pytest.raises(MissingObjectError, match="dvx pull"):
        store.read(b"\1" * 32, KIND_CHUNK)


def test_wrong_kind_refused(store: Store) -> None:
    data = b"x" * 10
    with store.writer() as w:
        w.add(KIND_CHUNK, chunk_id(data), data)
    with pytest.raises(CorruptObjectError, match="expected a manifest"):
        store.read(chunk_id(data), KIND_MANIFEST)


def test_abort_leaves_nothing(store: Store) -> None:
    w = store.writer()
    for i in range(5):
        b = pseudo_random(2000, i)
        w.add(KIND_CHUNK, chunk_id(b), b)
    w.abort()
    assert store.pack_names() == []
    assert os.listdir(store.tmp_dir) == []


def test_exception_in_block_aborts(store: Store) -> None:
    with pytest.raises(RuntimeError), store.writer() as w:
        w.add(KIND_CHUNK, chunk_id(b"abc"), b"abc")
        raise RuntimeError("boom")
    assert store.pack_names() == [] and os.listdir(store.tmp_dir) == []


def test_pack_without_index_is_invisible(store: Store) -> None:
    """What a kill between pack rename and index write leaves behind."""
    data = b"hello"
    with store.writer() as w:
        w.add(KIND_CHUNK, chunk_id(data), data)
    (name,) = store.pack_names()
    os.unlink(store.idx_path(name))
    fresh = Store(store.path)
    assert fresh.pack_names() == []
    assert not fresh.contains(chunk_id(data))
    # and the index can be rebuilt from the pack's own footer
    entries, footer_name = read_footer(store.pack_path(name))
    assert footer_name == name and entries[0].oid == chunk_id(data)


def test_index_checksum_verified(store: Store) -> None:
    with store.writer() as w:
        w.add(KIND_CHUNK, chunk_id(b"abc"), b"abc")
    (name,) = store.pack_names()
    path = store.idx_path(name)
    os.chmod(path, 0o644)
    raw = bytearray(Path(path).read_bytes())
    raw[30] ^= 1
    Path(path).write_bytes(bytes(raw))
    with pytest.raises(CorruptObjectError, match="checksum"):
        IdxFile(path, name)


def test_object_add_returns_id(store: Store) -> None:
    with store.writer() as w:
        oid = w.add_object(KIND_MANIFEST, b"DVXM")
    assert oid == object_id(KIND_MANIFEST, b"DVXM")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_store_is_a_clean_error(store: Store) -> None:
    os.chmod(store.tmp_dir, 0o500)
    try:
        with pytest.raises(StoreError, match="permission denied"), store.writer() as w:
            w.add(KIND_CHUNK, chunk_id(b"abc"), b"abc")
    finally:
        os.chmod(store.tmp_dir, 0o700)


def test_delta_chunks_round_trip_and_detect_damage(store: Store) -> None:
    from dvx.store.pack import DELTA_HEADER

    base = pseudo_random(60_000, 1)
    edited = base[:30_000] + b"0123456789" + base[30_000:]
    with store.writer() as w:
        w.add(KIND_CHUNK, chunk_id(base), base)
    with store.writer() as w:
        assert w.add_delta(chunk_id(edited), chunk_id(base), 30_000, 30_000, b"0123456789")
    fresh = Store(store.path)
    assert fresh.read(chunk_id(edited), KIND_CHUNK) == edited
    assert chunk_id(edited) in fresh.delta_ids()
    stored = fresh.full_index()[chunk_id(edited)][3]
    assert stored == DELTA_HEADER.size + 10  # 50 bytes instead of 60 KB
    # a delta whose base is damaged is never returned
    name = fresh.full_index()[chunk_id(base)][0]
    path = fresh.pack_path(name)
    os.chmod(path, 0o644)
    raw = bytearray(Path(path).read_bytes())
    raw[5000] ^= 1
    Path(path).write_bytes(bytes(raw))
    with pytest.raises(CorruptObjectError):
        Store(store.path).read(chunk_id(edited), KIND_CHUNK)


def test_delta_with_wrong_middle_fails_verification(store: Store) -> None:
    base = pseudo_random(40_000, 2)
    edited = base[:100] + b"X" + base[101:]
    with store.writer() as w:
        w.add(KIND_CHUNK, chunk_id(base), base)
        w.add_delta(chunk_id(edited), chunk_id(base), 100, len(base) - 101, b"Y")  # wrong byte
    with pytest.raises(CorruptObjectError, match="corrupted"):
        Store(store.path).read(chunk_id(edited), KIND_CHUNK)


def test_delta_pack_vector(tmp_path: Path) -> None:
    v = json.loads((VECTORS / "pack.json").read_text())["delta"]
    root = tmp_path / "store"
    Store.create(str(root))
    pack = root / "packs" / f"{v['name']}.pack"
    pack.write_bytes(bytes.fromhex(v["pack_hex"]))
    entries, name = read_footer(str(pack))
    assert name == v["name"] and [e.comp for e in entries] == [0, 1]
    (root / "packs" / f"{v['name']}.idx").write_bytes(bytes.fromhex(v["idx_hex"]))
    edited = bytes.fromhex(v["edited_hex"])
    assert Store(str(root)).read(chunk_id(edited), KIND_CHUNK) == edited


def _pack_bytes(store: Store) -> bytes:
    (name,) = store.pack_names()
    return Path(store.pack_path(name)).read_bytes()


@pytest.mark.parametrize("direct", [True, False])
def test_direct_io_packs_match_buffered_packs(tmp_path: Path, direct: bool) -> None:
    """Packs written with O_DIRECT (aligned bulk, buffered tail) are byte-identical to
    packs written through the page cache, across stage boundaries and odd sizes."""
    blobs = [pseudo_random(n, i) for i, n in enumerate([1, 4095, 4096, 4097, 70_000, 3 << 20, 9 << 20, 12_345])]
    Store.create(str(tmp_path / "ref"))
    ref = Store(str(tmp_path / "ref"), direct_io=False)
    Store.create(str(tmp_path / "s"))
    s = Store(str(tmp_path / "s"), direct_io=direct)
    for st in (ref, s):
        with st.writer() as w:
            for b in blobs:
                w.add(KIND_CHUNK, chunk_id(b), b)
    assert s.direct_io is (direct and hasattr(os, "O_DIRECT"))
    assert _pack_bytes(s) == _pack_bytes(ref)
    fresh = Store(str(tmp_path / "s"))
    for b in blobs:
        assert fresh.read(chunk_id(b), KIND_CHUNK) == b


def test_direct_io_refused_mid_pack_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the kernel refuses a direct write (here: a stage that is not a multiple of
    the block size, which Linux rejects with EINVAL), the writer continues through the
    page cache and the pack is still complete and correct."""
    if not hasattr(os, "O_DIRECT"):
        pytest.skip("no O_DIRECT on this platform")
    import dvx.store.local as local

    monkeypatch.setattr(local, "DIRECT_STAGE", (1 << 20) + 100)
    blobs = [pseudo_random(600_000, i) for i in range(6)]
    Store.create(str(tmp_path / "s"))
    s = Store(str(tmp_path / "s"))
    assert s.direct_io
    with s.writer() as w:
        for b in blobs:
            w.add(KIND_CHUNK, chunk_id(b), b)
    assert not s.direct_io  # switched off for the rest of this process
    fresh = Store(str(tmp_path / "s"))
    for b in blobs:
        assert fresh.read(chunk_id(b), KIND_CHUNK) == b


def test_direct_io_follows_config(repo_dir: Path) -> None:
    from dvx.errors import DvxError
    from dvx.repo import Repository

    assert Repository(str(repo_dir)).store.direct_io is hasattr(os, "O_DIRECT")
    cfg = repo_dir / ".dvx" / "config"
    original = cfg.read_text()
    cfg.write_text(original.replace("[core]", "[core]\ndirect_io = false", 1))
    assert Repository(str(repo_dir)).store.direct_io is False
    cfg.write_text(original.replace("[core]", "[core]\nfsync = false", 1))
    assert Repository(str(repo_dir)).store.direct_io is False  # only used with fsync
    cfg.write_text(original.replace("[core]", "[core]\ndirect_io = maybe", 1))
    with pytest.raises(DvxError, match="direct_io"):
        Repository(str(repo_dir))


def test_file_system_without_direct_io(tmp_path: Path) -> None:
    """ramfs refuses O_DIRECT at open (EINVAL): the writer notices, writes through the
    page cache, and remembers not to try again."""
    import subprocess

    mnt = tmp_path / "ram"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a ramfs here")
    try:
        Store.create(str(mnt / "s"))
        s = Store(str(mnt / "s"))
        assert s.direct_io is hasattr(os, "O_DIRECT")
        blobs = [pseudo_random(300_000, i) for i in range(5)]
        with s.writer() as w:
            for b in blobs:
                w.add(KIND_CHUNK, chunk_id(b), b)
        assert not s.direct_io
        fresh = Store(str(mnt / "s"))
        for b in blobs:
            assert fresh.read(chunk_id(b), KIND_CHUNK) == b
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("direct_io", [True, False])
def test_adopt_pack_buffer_verifies_in_memory_then_writes(tmp_path: Path, direct_io: bool) -> None:
    """A pack downloaded into memory is verified there (footer, name, every object)
    and only then written; a damaged one leaves nothing behind."""
    from dvx.store.pack import parse_footer

    Store.create(str(tmp_path / "a"))
    src = Store(str(tmp_path / "a"))
    blobs = [pseudo_random(5000 + 37 * i, i) for i in range(40)]
    with src.writer() as w:
        for b in blobs:
            w.add(KIND_CHUNK, chunk_id(b), b)
    name = src.pack_names()[0]
    exported = src.export_pack(name)
    good = Path(exported.path).read_bytes()
    assert parse_footer(name, good) == read_footer(exported.path)
    Store.create(str(tmp_path / "b"))
    dst = Store(str(tmp_path / "b"), direct_io=direct_io)
    bad = bytearray(good)
    bad[exported.entries[3].offset + 10] ^= 1

    def fill(data: bytes):  # type: ignore[no-untyped-def]
        def f(view: memoryview) -> None:
            view[:] = data
        return f
    with pytest.raises(CorruptObjectError, match="hash mismatch"):
        dst.adopt_pack_buffer(name, len(bad), fill(bytes(bad)), "test")
    with pytest.raises(CorruptObjectError, match="damaged"):
        dst.adopt_pack_buffer(name, len(good), fill(good[:-1] + b"\0"), "test")
    assert dst.pack_names() == [] and os.listdir(dst.tmp_dir) == []
    assert dst.adopt_pack_buffer(name, len(good), fill(good), "test") == len(good)
    assert dst.adopt_pack_buffer(name, len(good), fill(b""), "test") == 0  # already there
    fresh = Store(dst.path)
    assert Path(fresh.pack_path(name)).read_bytes() == good
    for b in blobs:
        assert fresh.read(chunk_id(b), KIND_CHUNK) == b
