"""The per-directory stat cache (``dvx.treescan``, ``StatCache.load_tree``): the Cython
scanner against its reference, and status/add/checkout doing work only where the
tree changed, yet never missing a change."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from dvx import treescan
from dvx.objects import ENTRY_FILE, ENTRY_LINK, ENTRY_TREE, Tree, TreeEntry, encode_tree_items
from dvx.ops.add import add
from dvx.repo import Repository
from dvx.statcache import NO_ID, RACY_NS, StatCache
from tests.conftest import Cli, pseudo_random, write
from tests.test_cli_workspace import awkward_dataset


def old(path: Path, seconds: float = 10) -> None:
    """Give a file an mtime well before now (outside the racy window)."""
    t = time.time() - seconds
    os.utime(path, (t, t), follow_symlinks=False)


def dataset(root: Path) -> None:
    for d in range(4):
        for i in range(5):
            write(root / f"d{d}" / f"f{i}.bin", pseudo_random(50 + i * 7, d * 10 + i))
    write(root / "a" / "b" / "c" / "d" / "deep.txt", "deep\n")
    write(root / "top.txt", "top\n")
    for p in root.rglob("*"):
        if p.is_file():
            old(p)


def add_once(repo_dir: Path, target: str = "data") -> tuple[str, int]:
    repo = Repository(str(repo_dir))
    res = add(repo, [target])[0]
    return res.pointer.id, res.hashed_files


def changes(cli: Cli) -> dict[str, list[str]]:
    entry = json.loads(cli("status", "--json").output)["paths"][0]
    return {k: entry.get(k, []) for k in ("added", "modified", "deleted")} | {"state": entry["state"]}


def test_cython_scanner_matches_reference(repo_dir: Path) -> None:
    from dvx._scan import diff_entries, parse_entries, racy_entries, scan_dirs  # type: ignore[import-not-found]

    root = repo_dir / "scan"
    awkward_dataset(root)
    os.mkfifo(root / "nested" / "fifo")
    write(root / "bad\udcff name.bin", "x")
    fast, ref = scan_dirs(str(root)), treescan.scan_dirs_reference(str(root))
    assert fast == ref == treescan.scan_dirs(str(root), "scan")  # one thread, two, Python
    assert [r for r, _ in fast][:2] == ["", "empty_dir"]
    assert scan_dirs(str(root), False) == treescan.scan_dirs_reference(str(root), False) == fast[:1]
    for _rel, record in fast:
        assert parse_entries(record) == treescan.parse_entries_reference(record)
        assert racy_entries(record, 0) == treescan.racy_entries_reference(record, 0)
        for kind in (1, 2, 3, 4):
            assert treescan.kind_entries(record, kind) == treescan.kind_entries_reference(record, kind)
        files = treescan.kind_entries(record, 1)
        patch = {i: (7, 8, 9, 10, 1) for i in files[-1:] + files[:2]}  # (any order)
        got = treescan.patch_entries(record, patch)
        assert got == treescan.patch_entries_reference(record, patch)
        assert treescan.patch_entries(record, patch | {10**6: (1, 1, 1, 1, 1)}) == got  # beyond: ignored
        patched = [e[2:7] for i, e in enumerate(parse_entries(got)) if i in patch]
        assert patched == [(1, 7, 8, 9, 10)] * len(patch)
    names = [e[0] for e in parse_entries(fast[0][1])]
    assert names == sorted(names, key=lambda n: n.encode("utf-8", "surrogateescape"))
    assert treescan.skipped(fast) == ["nested/fifo (fifo)"]
    # diff: one file changed, one deleted, one added
    before = dict(fast)[""]
    write(root / "empty.bin", "now with content")
    (root / "exact_min.bin").unlink()
    write(root / "zzz_new.txt", "new")
    after = dict(scan_dirs(str(root)))[""]
    got = diff_entries(before, after)
    assert got == treescan.diff_entries_reference(before, after)
    assert [(n, a >= 0, b >= 0) for n, a, b, _, _ in got] == [
        ("empty.bin", True, True), ("exact_min.bin", True, False), ("zzz_new.txt", False, True)]
    assert diff_entries(after, after) == []


def test_tree_encoding_without_objects_matches_tree_build() -> None:
    mid, tid = bytes(range(32)), bytes(range(1, 33))
    items = [("a.bin", ENTRY_FILE, 1, 10, 1, mid), ("link", ENTRY_LINK, 0, 0, 0, "a.bin"),
             ("sub", ENTRY_TREE, 0, 99, 7, tid), ("ünï", ENTRY_FILE, 0, 0, 1, mid)]
    data, oid = encode_tree_items(items)
    tree = Tree.build([TreeEntry("ünï", ENTRY_FILE, 0, 1, mid), TreeEntry("sub", ENTRY_TREE, 99, 7, tid),
                       TreeEntry("link", ENTRY_LINK, 6 - 1, 0, None, False, "a.bin"),
                       TreeEntry("a.bin", ENTRY_FILE, 10, 1, mid, True)])
    assert data == tree.encode() and oid == tree.object_id()
    assert Tree.parse(data) == tree
    Tree.check(data)


def test_changed_file_deep_in_the_tree_is_found_and_only_it_is_hashed(repo_dir: Path, cli: Cli) -> None:
    data = repo_dir / "data"
    dataset(data)
    first, hashed = add_once(repo_dir)
    assert hashed == 22
    assert changes(cli)["state"] == "clean"
    deep = data / "a" / "b" / "c" / "d" / "deep.txt"
    st = deep.stat()
    deep.write_text("DEEP\n")  # same size
    os.utime(deep, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: ctime still tells
    assert changes(cli) == {"state": "modified", "added": [], "modified": ["a/b/c/d/deep.txt"], "deleted": []}
    again = changes(cli)  # a second status (cache now holds the new content) says the same
    assert again["modified"] == ["a/b/c/d/deep.txt"]
    second, hashed = add_once(repo_dir)
    assert second != first and hashed == 1
    assert changes(cli)["state"] == "clean"
    # the cached tree is the one a fresh add (no cache at all) computes
    StatCache(str(repo_dir / ".dvx" / "state")).clear()
    assert add_once(repo_dir) == (second, 22)


def test_renamed_directory_is_reported_and_not_rehashed(repo_dir: Path, cli: Cli) -> None:
    data = repo_dir / "data"
    dataset(data)
    add_once(repo_dir)
    os.rename(data / "d1", data / "moved")
    got = changes(cli)
    assert got["state"] == "modified"
    assert got["added"] == [f"moved/f{i}.bin" for i in range(5)]
    assert got["deleted"] == [f"d1/f{i}.bin" for i in range(5)]
    oid, hashed = add_once(repo_dir)
    assert hashed == 0  # the directory's record was found under its old name
    StatCache(str(repo_dir / ".dvx" / "state")).clear()
    assert add_once(repo_dir) == (oid, 22)


def test_kinds_swapped_inside_the_tree(repo_dir: Path, cli: Cli) -> None:
    data = repo_dir / "data"
    dataset(data)
    add_once(repo_dir)
    shutil.rmtree(data / "d2")
    write(data / "d2", "now a file")
    (data / "top.txt").unlink()
    write(data / "top.txt" / "inner.txt", "a directory now")
    os.symlink("top.txt", data / "d3" / "f0.bin.link")
    got = changes(cli)
    assert got["added"] == ["d2", "d3/f0.bin.link", "top.txt/inner.txt"]
    assert got["deleted"] == [f"d2/f{i}.bin" for i in range(5)] + ["top.txt"]
    cli("checkout", "--force")
    assert changes(cli)["state"] == "clean"
    assert (data / "d2" / "f3.bin").read_bytes() == pseudo_random(50 + 21, 23)
    assert (data / "top.txt").read_text() == "top\n" and not (data / "d3" / "f0.bin.link").exists()


def test_racy_files_are_not_trusted(repo_dir: Path, cli: Cli) -> None:
    """A file written just before the scan keeps no id in the cache (its directory is
    not trusted), so a later write within the same timestamp tick cannot be missed;
    once it is old enough, a status records it."""
    data = repo_dir / "data"
    dataset(data)
    write(data / "d0" / "young.txt", "just written")
    add_once(repo_dir)
    cache = StatCache(str(repo_dir / ".dvx" / "state"))
    rec = cache.load_tree("data")
    d0 = rec.dirs["d0"]
    assert not d0.trusted and rec.root_id is None and cache.load_head("data") == (None, b"")
    names = [e[0] for e in treescan.parse_entries(d0.record)]
    assert d0.ids[names.index("young.txt") * 32:][:32] == NO_ID
    assert all(d.trusted for rel, d in rec.dirs.items() if rel != "d0")
    time.sleep(RACY_NS / 1e9 * 2)
    assert changes(cli)["state"] == "clean"
    rec = cache.load_tree("data")
    assert rec.dirs["d0"].trusted and rec.root_id is not None


def test_checkout_restores_files_deleted_in_many_directories(repo_dir: Path, cli: Cli) -> None:
    data = repo_dir / "data"
    dataset(data)
    cli("add", "data")
    cli("status")  # the cache now trusts every directory
    for d in range(4):
        (data / f"d{d}" / "f2.bin").unlink()
    (data / "a" / "b" / "c" / "d" / "deep.txt").unlink()
    from dvx.ops.checkout import checkout

    res = checkout(Repository(str(repo_dir)))[0]
    assert res.unchanged == 22 - 5 and not res.removed and not res.error
    assert sorted(res.restored) == sorted([f"d{d}/f2.bin" for d in range(4)] + ["a/b/c/d/deep.txt"])
    assert (data / "d1" / "f2.bin").read_bytes() == pseudo_random(50 + 14, 12)
    assert changes(cli)["state"] == "clean"
    # a second checkout right away trusts what the first wrote: nothing is re-hashed
    # (its directories' records were updated with the new files' stats)
    for d in range(4):
        (data / f"d{d}" / "f4.bin").unlink()
    time.sleep(RACY_NS / 1e9 * 2)
    res = checkout(Repository(str(repo_dir)))[0]
    assert sorted(res.restored) == [f"d{d}/f4.bin" for d in range(4)]
    rec = StatCache(str(repo_dir / ".dvx" / "state")).load_tree("data")
    assert all(d.trusted for d in rec.dirs.values()) and rec.root_id is not None
    assert changes(cli)["state"] == "clean"
    # unsaved data in a changed directory still blocks a checkout
    write(data / "d0" / "f1.bin", "edited, not saved")
    (data / "d0" / "f3.bin").unlink()
    res = cli("checkout", ok=False)
    assert "unsaved data: data/d0/f1.bin" in res.output
    assert not (data / "d0" / "f3.bin").exists()  # nothing was changed


def test_lost_directory_files_of_the_cache_only_cost_a_rehash(repo_dir: Path, cli: Cli) -> None:
    """The cache keeps the directories' records in a segment file beside its listing;
    a segment that is gone, or a damaged part of one, means those directories are
    hashed again, never a wrong answer."""
    data = repo_dir / "data"
    dataset(data)
    oid, _ = add_once(repo_dir)
    state = repo_dir / ".dvx" / "state" / "stat"
    segments = [p for d in state.glob("*.dirs") for p in d.iterdir()]
    assert len(segments) == 1 and segments[0].name.endswith(".seg")  # one file per save
    rec = StatCache(str(repo_dir / ".dvx" / "state")).load_tree("data")
    assert len(rec.dirs) == 9  # data, a, a/b, a/b/c, a/b/c/d, d0..d3
    ref = rec.dirs["d1"].ref
    assert ref is not None and ref[0] == segments[0].name
    raw = bytearray(segments[0].read_bytes())
    raw[ref[1] + 3] ^= 0xFF  # damage d1's record
    segments[0].write_bytes(bytes(raw))
    assert not StatCache(str(repo_dir / ".dvx" / "state")).load_tree("data").dirs["d1"].available()
    write(data / "d1" / "f0.bin", "changed")
    got = changes(cli)
    assert got["modified"] == ["d1/f0.bin"] and not got["added"] and not got["deleted"]
    for d in state.glob("*.dirs"):
        for p in d.iterdir():
            p.unlink()
    new, hashed = add_once(repo_dir)
    # unchanged directories keep their tree ids (the list of directories says them);
    # the changed one (d1) and its parent lost their files' ids: 5 + 1 files hashed
    assert new != oid and hashed == 6
    StatCache(str(repo_dir / ".dvx" / "state")).clear()
    assert add_once(repo_dir) == (new, 22)
    assert changes(cli)["state"] == "clean"
    cli("gc")  # clears the stat cache, directories included
    assert not list(state.glob("*.dirs")) and changes(cli)["state"] == "clean"


# -- the cache's files: segments (protocols/format.md §7) ------------------------------

def test_statcache_vectors(tmp_path: Path) -> None:
    """The frozen stat cache of protocols/vectors/statcache.json reads back as described
    (and so does the same cache in the format before 2026-12); saving what it describes
    writes the same segment and the same list."""
    import marshal

    from blake3 import blake3

    from dvx.statcache import DirRecord, TreeRecord
    from tests.conftest import VECTORS

    v = json.loads((VECTORS / "statcache.json").read_text())
    segment = bytes.fromhex(v["segment_hex"])
    assert segment.startswith(b"DVXSEG1\0")
    for d in v["dirs"]:
        name, off, rlen, ilen, check = d["ref"]
        record, ids = bytes.fromhex(d["record_hex"]), bytes.fromhex(d["ids_hex"])
        assert segment[off:off + rlen + ilen] == record + ids
        assert len(ids) == 32 * len(treescan.parse_entries(record))
        assert blake3(record + ids).digest()[:16].hex() == check and blake3(record).hexdigest() == d["digest"]

    def check_read(state: Path) -> None:
        rec = StatCache(str(state)).load_tree(v["target"])
        assert rec.root_id == bytes.fromhex(v["root_id"]) and rec.scan_start_ns == v["scan_start_ns"]
        assert list(rec.dirs) == [d["dir"] for d in v["dirs"]]
        for d in v["dirs"]:
            got = rec.dirs[d["dir"]]
            assert (got.digest.hex(), got.tree.hex(), got.size, got.files, got.subs.hex(), got.trusted) == \
                (d["digest"], d["tree"], d["size"], d["files"], d["subs"], d["trusted"])
            assert (got.record.hex(), got.ids.hex()) == (d["record_hex"], d["ids_hex"])

    state = tmp_path / "now"
    (state / "stat" / v["segments_dir"]).mkdir(parents=True)
    (state / "stat" / v["cache_file"]).write_bytes(bytes.fromhex(v["listing_hex"]))
    (state / "stat" / v["segments_dir"] / v["segment_name"]).write_bytes(segment)
    check_read(state)
    old = tmp_path / "before"
    (old / "stat" / v["segments_dir"]).mkdir(parents=True)
    (old / "stat" / v["cache_file"]).write_bytes(bytes.fromhex(v["before_2026_12"]["listing_hex"]))
    for name, body in v["before_2026_12"]["files"].items():
        (old / "stat" / v["segments_dir"] / name).write_bytes(bytes.fromhex(body))
    check_read(old)
    # writing what the vectors describe gives their segment and list (but for the
    # segment's name, which is random)
    fresh = tmp_path / "fresh"
    dirs = {d["dir"]: DirRecord(bytes.fromhex(d["digest"]), bytes.fromhex(d["tree"]), d["size"], d["files"],
                                bytes.fromhex(d["subs"]), d["trusted"], record=bytes.fromhex(d["record_hex"]),
                                ids=bytes.fromhex(d["ids_hex"])) for d in v["dirs"]}
    described = TreeRecord(bytes.fromhex(v["root_id"]), v["scan_start_ns"], dirs)
    StatCache(str(fresh)).save_tree(v["target"], described, None)
    written = list((fresh / "stat" / v["segments_dir"]).iterdir())
    assert len(written) == 1 and written[0].read_bytes() == segment
    listing = (fresh / "stat" / v["cache_file"]).read_bytes()
    assert listing[:8] == b"DVXSTAT4"
    want = marshal.loads(bytes.fromhex(v["listing_hex"])[8:])
    got = marshal.loads(listing[8:])
    renamed = [item[:7] + ((v["segment_name"],) + item[7][1:],) for item in got[3]]
    assert got[:3] == want[:3] and renamed == want[3]


def test_old_cache_files_are_read_then_converted(repo_dir: Path) -> None:
    """A cache written before segments (one file per directory) is still used: after an
    upgrade, a change re-hashes only the changed file; that save moves every record
    into one segment and removes the old files."""
    import marshal

    from blake3 import blake3

    data = repo_dir / "data"
    dataset(data)
    add_once(repo_dir)
    state = repo_dir / ".dvx" / "state" / "stat"
    cache = StatCache(str(repo_dir / ".dvx" / "state"))
    rec = cache.load_tree("data")
    blob_dir = next(state.glob("*.dirs"))
    items = []
    for rel, d in rec.dirs.items():  # rewrite the cache as the format before 2026-12 had it
        body = b"DVXDIR1\0" + marshal.dumps((d.record, d.ids))
        name = blake3(body).hexdigest()[:32]
        (blob_dir / name).write_bytes(body)
        items.append((rel, d.digest, d.tree, d.size, d.files, d.subs, d.trusted, name))
    for p in blob_dir.glob("*.seg"):
        p.unlink()
    listing = next(state.glob("*.cache"))
    listing.write_bytes(b"DVXSTAT3" + marshal.dumps(("data", rec.root_id, rec.scan_start_ns, items)))
    write(data / "d2" / "f1.bin", "changed")
    old(data / "d2" / "f1.bin")
    _new, hashed = add_once(repo_dir)
    assert hashed == 1  # d2's other four files came from the old file of d2
    left = sorted(p.name for p in blob_dir.iterdir())
    assert len(left) == 1 and left[0].endswith(".seg")
    rec = cache.load_tree("data")
    assert all(d.ref is not None and d.available() for d in rec.dirs.values())


def test_cache_segments_stay_few_and_small(repo_dir: Path, cli: Cli) -> None:
    """Each save writes one segment with what changed; segments mostly dead or small
    are folded into the new one, so a long run of one-file changes keeps a handful of
    segments and the space stays within twice what is alive. A segment that no list
    names (a killed save) is removed by the next save."""
    data = repo_dir / "data"
    dataset(data)
    add_once(repo_dir)
    state = repo_dir / ".dvx" / "state" / "stat"
    blob_dir = next(state.glob("*.dirs"))
    (blob_dir / "00000000deadbeef.seg").write_bytes(b"DVXSEG1\0left by a killed save")
    cache = StatCache(str(repo_dir / ".dvx" / "state"))
    changed: set[str] = set()
    for k in range(24):
        changed.add(f"d{k % 4}/f{k % 5}.bin")
        write(data / f"d{k % 4}" / f"f{k % 5}.bin", f"version {k}")
        old(data / f"d{k % 4}" / f"f{k % 5}.bin")
        got = changes(cli)
        assert got["modified"] == sorted(changed) and got["state"] == "modified"
        segments = list(blob_dir.iterdir())
        assert all(p.name.endswith(".seg") and p.name != "00000000deadbeef.seg" for p in segments)
        rec = cache.load_tree("data")
        live = sum(d.ref[2] + d.ref[3] for d in rec.dirs.values() if d.ref is not None)
        assert {d.ref[0] for d in rec.dirs.values() if d.ref is not None} == {p.name for p in segments}
        assert len(segments) <= 4, k
        assert sum(p.stat().st_size for p in segments) <= 2 * live + 8 * len(segments) + 4096, k
    assert all(d.available() for d in cache.load_tree("data").dirs.values())


def test_scan_level_reports_each_directory(repo_dir: Path) -> None:
    """``scan_level`` (a level of directories on several threads) gives what
    ``scan_one`` gives for each, and an error for a directory it cannot read without
    failing the others."""
    from dvx._scan import scan_level, scan_one  # type: ignore[import-not-found]

    root = repo_dir / "scan"
    for d in range(7):
        for i in range(d * 3):
            write(root / f"d{d}" / f"f{i}", "x" * i)
        (root / f"d{d}" / "sub").mkdir(parents=True)
    write(root / "plain", "not a directory")

    def fds() -> list[int]:
        names = [f"d{d}" for d in range(7)] + ["plain"]
        return [os.open(root / n, os.O_RDONLY) for n in names]

    want = []
    for fd in fds()[:7]:
        want.append(scan_one(fd, "w", True))
    for threads in (1, 2, 3, 16):
        got = scan_level(fds(), [f"w{i}" for i in range(8)], True, threads)
        assert len(got) == 8 and isinstance(got[7], OSError) and got[7].filename == "w7"
        for (rec, subs), (wrec, wsubs) in zip(got[:7], want, strict=True):
            assert rec == wrec and [n for n, _ in subs] == [n for n, _ in wsubs] == ["sub"]
            for _n, sub in subs:
                os.close(sub)
    for _n, sub in [s for _r, subs in want for s in subs]:
        os.close(sub)
    assert scan_level([], [], True, 2) == []
