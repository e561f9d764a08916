"""Chunk-exact range reads from remotes and the shared chunk cache (issue #12, item 3-4).

Against real servers (moto S3) and the directory remote: a reader in a repository whose
local store is empty fetches only the chunks that cover a range, with one ranged GET
per run; the second read makes no request; corrupt and missing chunks are refused and
named; the reader keeps working after ``fork`` (os.fork, multiprocessing fork and
spawn) and from many threads.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import pytest

from dvx.errors import ConfigError, CorruptObjectError, MissingObjectError
from dvx.hashing import KIND_CHUNK, KIND_MANIFEST, chunk_id
from dvx.objects import Manifest
from dvx.ops.add import add
from dvx.ops.init import init as dvx_init
from dvx.ops.push import push
from dvx.pointer import read_pointer
from dvx.remote.locations import LocationMap
from dvx.remote.reader import RemoteReader, open_remote
from dvx.repo import Repository
from dvx.store.chunkcache import CacheWarning, ChunkCache, configured_size, user_cache_dir
from dvx.store.pack import PackEntry
from tests.conftest import VECTORS, Cli, pseudo_random, write

TOP = Path(__file__).resolve().parent.parent

SIZE = 6_000_000
_buckets = [0]


def _remote_args(url: str, opts: dict[str, str]) -> list[str]:
    args = ["remote", "add", "origin", url, "--default", "--local"]
    for k, v in opts.items():
        args += ["-o", f"{k}={v}"]
    return args


@pytest.fixture(params=["dir", "s3"])
def pushed(request: pytest.FixtureRequest, repo_dir: Path, cli: Cli, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """(reader repo with an empty store, data, manifest id, remote url/opts)."""
    from tests import servers

    if request.param == "dir":
        url, opts = str(tmp_path / "remote-dir"), {}
    else:
        srv = request.getfixturevalue("s3_server")
        _buckets[0] += 1
        bucket = f"dvx-read-{os.getpid()}-{_buckets[0]}"
        servers.make_bucket(srv, bucket)
        url, opts = f"s3://{bucket}/p", servers.options_for(srv)
    monkeypatch.setenv("DVX_CACHE_DIR", str(tmp_path / "usercache"))
    data = pseudo_random(SIZE, 7)
    write(repo_dir / "big.bin", data)
    cli("add", "big.bin")
    cli(*_remote_args(url, opts))
    cli("push")
    mid = read_pointer(str(repo_dir / "big.bin.dvx")).oid
    # a second repository on this machine, same remote, nothing in its store
    other = tmp_path / "reader"
    other.mkdir()
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    dvx_init(str(other))
    monkeypatch.chdir(other)
    cli(*_remote_args(url, opts))
    return Repository(str(other)), data, mid, request.param


def test_range_read_fetches_only_covering_chunks_then_uses_the_cache(pushed) -> None:  # type: ignore[no-untyped-def]
    repo, data, mid, _kind = pushed
    reader = open_remote(repo, None)
    manifest = reader.read_manifest(mid)
    assert len(manifest.chunks) > 40 and repo.store.pack_names() == []
    start, end = 3_000_000, 3_000_000 + (1 << 20) // 4
    before, moved = reader.requests, reader.bytes_fetched
    assert reader.range_requests == 1  # the manifest
    assert reader.read_range(manifest, start, end) == data[start:end]
    # only the covering chunks moved, in one ranged GET (they lie back to back)
    pos, covering = 0, 0
    for n, _cid in manifest.chunks:
        if pos < end and pos + n > start:
            covering += n
        pos += n
    assert reader.range_requests == 2
    assert reader.bytes_fetched - moved == covering
    assert covering < (end - start) + 2 * 256 * 1024
    assert reader.requests - before == 1
    # the second read (same reader, or a new one: the shared cache) makes no request
    again = open_remote(repo, None)
    assert again.read_range(again.read_manifest(mid), start, end) == data[start:end]
    assert again.requests == 0 and again.range_requests == 0
    assert reader.read_range(manifest, start, end) == data[start:end] and reader.requests - before == 1
    # reads at the edges, across chunk bounds, and past the end
    for s, e in [(0, 1), (SIZE - 5, SIZE + 100), (65_000, 400_000), (SIZE, SIZE + 1), (10, 10)]:
        assert reader.read_range(manifest, s, e) == data[s:e]
    with reader.open_file(manifest) as f:
        f.seek(2_000_000)
        assert f.read(100_000) == data[2_000_000:2_100_000]
        assert f.read(3) == data[2_100_000:2_100_003]
        f.seek(-10, os.SEEK_END)
        assert f.read() == data[-10:]
        f.seek(0)
        assert f.read() == data
    assert repo.store.pack_names() == []  # reading never writes the store


def test_a_new_process_locates_chunks_without_listing(pushed) -> None:  # type: ignore[no-untyped-def]
    repo, data, mid, _kind = pushed
    reader = open_remote(repo, None)
    reader.read_manifest(mid)
    # a fresh reader (as in another process), empty cache: the saved location map
    # names the pack: one marker read (the format gate) and one ranged GET
    fresh = RemoteReader(repo.store, open_remote(repo, None).remote, None)
    manifest = fresh.read_manifest(mid)
    assert fresh.requests == 2 and fresh.range_requests == 1
    assert fresh.read_range(manifest, 100, 200) == data[100:200] and fresh.range_requests == 2


def test_chunks_in_the_local_store_are_never_fetched_nor_cached(repo_dir: Path, cli: Cli, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVX_CACHE_DIR", str(tmp_path / "uc"))
    data = pseudo_random(2_000_000, 5)
    write(repo_dir / "f.bin", data)
    cli("add", "f.bin")
    cli(*_remote_args(str(tmp_path / "r"), {}))
    cli("push")
    repo = Repository(str(repo_dir))
    reader = open_remote(repo, None)
    mid = read_pointer(str(repo_dir / "f.bin.dvx")).oid
    m = reader.read_manifest(mid)
    assert reader.read_range(m, 5, 1_500_000) == data[5:1_500_000]
    assert reader.requests == 0 and reader.cache is not None and reader.cache.size() == 0


def test_a_corrupt_remote_chunk_is_refused_and_named(repo_dir: Path, cli: Cli, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVX_CACHE_DIR", str(tmp_path / "uc"))
    data = pseudo_random(1_500_000, 9)
    write(repo_dir / "f.bin", data)
    cli("add", "f.bin")
    remote_dir = tmp_path / "r"
    cli(*_remote_args(str(remote_dir), {}))
    cli("push")
    repo = Repository(str(repo_dir))
    mid = read_pointer(str(repo_dir / "f.bin.dvx")).oid
    manifest = repo.store.read_manifest(mid)
    reader = open_remote(repo, None)
    # flip one byte of the third chunk in the remote's pack; read as if the store lacked it
    third = manifest.chunks[2][1]
    third_bytes = repo.store.read(third, KIND_CHUNK)
    pack_file = next(p for p in remote_dir.glob("packs/*/*.pack") if third_bytes in p.read_bytes())
    raw = bytearray(pack_file.read_bytes())
    raw[raw.find(third_bytes) + 7] ^= 1
    pack_file.chmod(0o644)
    pack_file.write_bytes(bytes(raw))
    empty = _empty_store_reader(repo, reader, tmp_path)
    with pytest.raises(CorruptObjectError) as info:
        empty.read_range(manifest, 0, SIZE)
    msg = str(info.value)
    assert third.hex() in msg and "origin" in msg and "hash mismatch" in msg
    # nothing of that read was cached: a read of the good first chunk alone works
    assert empty.cache is not None and not empty.cache.has(third)
    first_len = manifest.chunks[0][0]
    assert empty.read_range(manifest, 0, first_len) == data[:first_len]


def _empty_store_reader(repo: Repository, reader: RemoteReader, tmp_path: Path) -> RemoteReader:
    """A reader of the same remote whose local store is empty."""
    from dvx.store.local import Store

    d = tmp_path / f"empty-store-{os.urandom(3).hex()}"
    Store.create(str(d))
    return RemoteReader(Store(str(d)), reader.remote, ChunkCache(str(tmp_path / "uc2")))


def test_a_missing_chunk_is_named_with_the_remote(pushed) -> None:  # type: ignore[no-untyped-def]
    repo, data, mid, _kind = pushed
    reader = open_remote(repo, None)
    manifest = reader.read_manifest(mid)
    ghost = chunk_id(b"never pushed")
    forged = Manifest(manifest.size + 12, manifest.digest, manifest.chunks + ((12, ghost),))
    listed = reader.requests
    with pytest.raises(MissingObjectError) as info:
        reader.read_range(forged, 0, forged.size)
    assert ghost.hex() in str(info.value) and "'origin'" in str(info.value)
    assert reader.requests - listed == 1  # the map was refreshed once (one LIST), then refused
    assert reader.range_requests == 1  # the manifest only: no partial fetch of the rest
    assert reader.read_range(forged, 0, 10) == data[:10]  # the chunks that exist still read


def test_the_map_is_refreshed_when_the_remote_gains_packs(repo_dir: Path, cli: Cli, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVX_CACHE_DIR", str(tmp_path / "uc"))
    write(repo_dir / "a.bin", pseudo_random(300_000, 1))
    cli("add", "a.bin")
    cli(*_remote_args(str(tmp_path / "r"), {}))
    cli("push")
    repo = Repository(str(repo_dir))
    reader = _empty_store_reader(repo, open_remote(repo, None), tmp_path)
    a = read_pointer(str(repo_dir / "a.bin.dvx")).oid
    assert reader.read_manifest(a).size == 300_000
    b_data = pseudo_random(200_000, 2)
    write(repo_dir / "b.bin", b_data)
    cli("add", "b.bin")
    cli("push")
    b = read_pointer(str(repo_dir / "b.bin.dvx")).oid
    m = reader.read_manifest(b)  # not in the saved map: listed again, found
    assert reader.read_range(m, 0, m.size) == b_data


@pytest.mark.parametrize("client", ["direct", "s3fs"])
@pytest.mark.parametrize("method", ["os.fork", "fork", "spawn"])
def test_a_reader_made_before_a_fork_works_in_the_child(pushed, method: str, client: str,  # type: ignore[no-untyped-def]
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``s3fs``: S3 through s3fs, whose event loop exists only in the parent."""
    repo, data, mid, kind = pushed
    if client == "s3fs":
        if kind != "s3":
            pytest.skip("s3fs is an S3 client")
        monkeypatch.setenv("DVX_S3_DIRECT", "0")
    reader = open_remote(repo, None)
    manifest = reader.read_manifest(mid)
    assert reader.read_range(manifest, 0, 1000) == data[:1000]  # clients and pools in use
    ranges = [(1_000_000, 1_300_000), (4_000_000, 4_100_000), (5_900_000, SIZE)]
    if method == "os.fork":
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: reads through the parent's reader, reports, exits
            try:
                out = [reader.read_range(manifest, s, e) == data[s:e] for s, e in ranges]
                os.write(w, json.dumps(out).encode())
            finally:
                os._exit(0)
        os.close(w)
        got = json.loads(os.read(r, 1000) or b"null")
        os.waitpid(pid, 0)
        assert got == [True, True, True]
        return
    # a Process: with fork, the child inherits the parent's reader object as it is (a
    # Pool would pickle it); with spawn, it is pickled and rebuilt in the child
    ctx = multiprocessing.get_context(method)
    results = ctx.Queue()
    procs = [ctx.Process(target=_read_in_worker, args=(reader, manifest, s, e, results)) for s, e in ranges]
    for p in procs:
        p.start()
    got = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert got == sorted((s, chunk_id(data[s:e])) for s, e in ranges)


def _read_in_worker(reader: RemoteReader, manifest: Manifest, start: int, end: int,
                    results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    results.put((start, chunk_id(reader.read_range(manifest, start, end))))


def test_threads_share_one_reader(pushed) -> None:  # type: ignore[no-untyped-def]
    repo, data, mid, _kind = pushed
    reader = open_remote(repo, None)
    manifest = reader.read_manifest(mid)
    errors: list[str] = []

    def work(i: int) -> None:
        s = (i * 379_001) % (SIZE - 200_000)
        if reader.read_range(manifest, s, s + 150_000) != data[s:s + 150_000]:
            errors.append(f"bad bytes at {s}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# -- the chunk cache ----------------------------------------------------------------------

def test_cache_is_verified_capped_and_least_recently_used_first(tmp_path: Path) -> None:
    cache = ChunkCache(str(tmp_path / "c"), max_size=10_000)
    blobs = [pseudo_random(3000, i) for i in range(3)]
    ids = [chunk_id(b) for b in blobs]
    for cid, b in zip(ids[:2], blobs[:2], strict=True):
        assert cache.put(cid, b)
    old = os.stat(cache.path_of(ids[0])).st_mtime
    os.utime(cache.path_of(ids[0]), (old - 100, old - 100))
    os.utime(cache.path_of(ids[1]), (old - 50, old - 50))
    assert cache.get(ids[0], KIND_CHUNK) == blobs[0]  # used now: the newest
    assert cache.put(ids[2], blobs[2])
    big = pseudo_random(3000, 9)
    cache.put(chunk_id(big), big)  # 12,000 > 10,000: the least recently used goes
    cache.flush()  # (eviction runs on a thread of its own)
    assert not cache.has(ids[1]) and cache.has(ids[0]) and cache.has(ids[2])
    assert cache.size() <= 9_000
    # a damaged file is a miss, and removed
    path = cache.path_of(ids[0])
    Path(path).write_bytes(b"x" + blobs[0][1:])
    assert cache.get(ids[0], KIND_CHUNK) is None and not os.path.exists(path)
    # the id is of a kind: a chunk's bytes do not pass as a manifest
    assert cache.get(ids[2], KIND_MANIFEST) is None
    # temporary files of killed writers are removed once old
    tmp = Path(cache.path_of(ids[2])).parent / ".tmp-dead"
    tmp.write_bytes(b"partial")
    os.utime(tmp, (old - 7200, old - 7200))
    cache.evict()
    assert not tmp.exists()


def test_a_cache_entry_that_is_not_a_regular_file_is_a_miss_and_never_blocks(tmp_path: Path) -> None:
    """Regression: a FIFO at an entry's name made `get` block forever, a link to
    /dev/zero read without end; a directory or link is a miss, and a FIFO or link is
    replaced by the next put. Run in a child with a timeout: the old code hangs."""
    code = textwrap.dedent(f"""
        import os
        from dvx.hashing import KIND_CHUNK, chunk_id
        from dvx.store.chunkcache import ChunkCache
        cache = ChunkCache({str(tmp_path / "c")!r}, max_size=1 << 20)
        blobs = [bytes([i]) * 1000 for i in range(3)]
        ids = [chunk_id(b) for b in blobs]
        paths = [cache.path_of(c) for c in ids]
        for p in paths:
            os.makedirs(os.path.dirname(p), exist_ok=True)
        os.mkfifo(paths[0])
        os.symlink("/dev/zero", paths[1])
        os.mkdir(paths[2])
        assert [cache.get(c, KIND_CHUNK) for c in ids] == [None, None, None]
        assert cache.put(ids[0], blobs[0]) and cache.get(ids[0], KIND_CHUNK) == blobs[0]
        assert cache.put(ids[1], blobs[1]) and cache.get(ids[1], KIND_CHUNK) == blobs[1]
        assert not os.path.islink(paths[1])
        print("done")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, PYTHONPATH=str(TOP)))
    assert proc.stdout.strip() == "done", proc.stderr


def test_an_unwritable_cache_reads_without_caching_and_warns_once(pushed, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    repo, data, mid, _kind = pushed
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("DVX_CACHE_DIR", str(blocker))
    reader = open_remote(repo, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = reader.read_manifest(mid)
        assert reader.read_range(manifest, 0, 500_000) == data[:500_000]
        assert reader.read_range(manifest, 600_000, 900_000) == data[600_000:900_000]
    mine = [w for w in caught if issubclass(w.category, CacheWarning)]
    assert len(mine) == 1 and "cannot be written" in str(mine[0].message)
    assert reader.read_range(manifest, 0, 500_000) == data[:500_000]  # fetched again: no cache
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        other = open_remote(repo, None)  # another reader, same process: no second warning
        assert other.read_range(manifest, 0, 100) == data[:100]
    assert not [w for w in caught if issubclass(w.category, CacheWarning)]


def test_cache_location_and_size_settings(repo_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.delenv("DVX_CACHE_DIR", raising=False)
    monkeypatch.delenv("DVX_CACHE_SIZE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == str(tmp_path / "xdg" / "dvx")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert user_cache_dir() == os.path.join(os.environ["HOME"], ".cache", "dvx")
    monkeypatch.setenv("DVX_CACHE_DIR", str(tmp_path / "mine"))
    assert user_cache_dir() == str(tmp_path / "mine")
    assert configured_size() == 10 << 30
    with open(repo_dir / ".dvx" / "config", "a") as f:
        f.write("\n[cache]\nsize = 512M\n")
    repo = Repository(str(repo_dir))
    assert repo.config.cache.size == "512M" and configured_size(repo.config.cache.size) == 512 << 20
    monkeypatch.setenv("DVX_CACHE_SIZE", "2GiB")
    assert configured_size(repo.config.cache.size) == 2 << 30
    monkeypatch.setenv("DVX_CACHE_SIZE", "0")
    assert configured_size() == 0 and not ChunkCache().enabled
    monkeypatch.setenv("DVX_CACHE_SIZE", "lots")
    with pytest.raises(ConfigError, match="DVX_CACHE_SIZE"):
        configured_size()
    with open(repo_dir / ".dvx" / "config", "a") as f:
        f.write("colour = blue\n")
    with pytest.raises(ConfigError, match="colour"):
        _ = Repository(str(repo_dir)).config
    text = (repo_dir / ".dvx" / "config").read_text().replace("size = 512M", "size = -3").replace(
        "colour = blue\n", "")
    (repo_dir / ".dvx" / "config").write_text(text)
    with pytest.raises(ConfigError, match=r"\[cache\] size"):
        _ = Repository(str(repo_dir)).config


# -- the location map ----------------------------------------------------------------------

def test_location_map_vectors() -> None:
    vec = json.loads((VECTORS / "remote_locations.json").read_text())
    packs = [(p["name"], [PackEntry(bytes.fromhex(e["id"]), e["kind"], e["offset"], e["length"], e["encoding"])
                          for e in p["entries"]]) for p in vec["packs"]]
    m = LocationMap.build(packs)
    assert m.encode().hex() == vec["file_hex"]
    parsed = LocationMap.parse(bytes.fromhex(vec["file_hex"]), "vector")
    for case in vec["lookups"]:
        loc = parsed.find(bytes.fromhex(case["id"]))
        assert (list(loc) if loc else None) == case["location"]
    bad = bytearray.fromhex(vec["file_hex"])
    bad[30] ^= 1
    with pytest.raises(CorruptObjectError, match="checksum"):
        LocationMap.parse(bytes(bad), "vector")


def test_open_remote_names_a_missing_remote(repo_dir: Path) -> None:
    repo = Repository(str(repo_dir))
    with pytest.raises(ConfigError, match="no remote is configured"):
        open_remote(repo, None)
    with pytest.raises(ConfigError, match="no remote named 'x'"):
        open_remote(repo, "x")


def test_api_level_round_trip(repo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the verbs (no CLI): add, push, read back from a store-less clone's view."""
    monkeypatch.setenv("DVX_CACHE_DIR", str(tmp_path / "uc"))
    data = pseudo_random(700_000, 3)
    write(repo_dir / "m.bin", data)
    repo = Repository(str(repo_dir))
    add(repo, ["m.bin"])
    Cli()(*_remote_args(str(tmp_path / "r"), {}))
    repo = Repository(str(repo_dir))
    push(repo)
    reader = _empty_store_reader(repo, open_remote(repo, None), tmp_path)
    m = reader.read_manifest(read_pointer(str(repo_dir / "m.bin.dvx")).oid)
    assert reader.read_range(m, 1, 699_999) == data[1:699_999]


def test_a_range_of_a_large_file_reads_only_the_chunk_lists_that_cover_it(
        repo_dir: Path, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file of more than 256 chunks has a two-level manifest: a range needs its head
    and the one or two chunk lists that cover it, not every list."""
    monkeypatch.setenv("DVX_CACHE_DIR", str(tmp_path / "uc"))
    data = pseudo_random(40_000_000, 4)
    write(repo_dir / "large.bin", data)
    cli("add", "large.bin")
    cli(*_remote_args(str(tmp_path / "r"), {}))
    cli("push")
    repo = Repository(str(repo_dir))
    mid = read_pointer(str(repo_dir / "large.bin.dvx")).oid
    full = repo.store.read_manifest(mid)
    assert len(full.chunks) > 512  # more than two chunk lists on average
    reader = _empty_store_reader(repo, open_remote(repo, None), tmp_path)
    start, end = 25_000_000, 25_000_000 + (1 << 20)
    assert reader.read_manifest_range(mid, start, end) == data[start:end]
    # the head, one or two chunk lists, the chunks: a few requests, ~1 MiB
    assert reader.range_requests <= 4
    assert reader.bytes_fetched < (end - start) + 2 * 256 * 1024 + 64 * 1024
    with reader.open_manifest(mid) as f:
        f.seek(39_999_000)
        assert f.read() == data[39_999_000:]
        f.seek(7)
        assert f.read(3_000_000) == data[7:3_000_007]
    # the whole manifest through the reader: its chunk lists fetched together
    fresh = _empty_store_reader(repo, open_remote(repo, None), tmp_path)
    assert fresh.read_manifest(mid) == full
    assert fresh.range_requests < len(full.objects())
    # a forged chunk list (its id is checked) is refused
    with pytest.raises(CorruptObjectError):
        fresh.read_object(full.objects()[0][1], KIND_MANIFEST)


def test_a_map_naming_a_pack_that_is_gone_is_rebuilt(repo_dir: Path, cli: Cli, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A saved map can name a pack that remote gc removed since: the read lists the
    packs again (once) and finds the objects where they are now."""
    monkeypatch.setenv("DVX_CACHE_DIR", str(tmp_path / "uc"))
    data = pseudo_random(500_000, 6)
    write(repo_dir / "g.bin", data)
    cli("add", "g.bin")
    cli(*_remote_args(str(tmp_path / "r"), {}))
    cli("push")
    repo = Repository(str(repo_dir))
    mid = read_pointer(str(repo_dir / "g.bin.dvx")).oid
    manifest = repo.store.read_manifest(mid)
    reader = open_remote(repo, None)
    # a map from "before a gc": every object in a pack the remote no longer has
    gone = "ab" * 32
    entries = [PackEntry(cid, KIND_CHUNK, 8 + 10 * i, n) for i, (n, cid) in enumerate(manifest.chunks)]
    entries.append(PackEntry(mid, KIND_MANIFEST, 4, len(manifest.encode())))
    map_path = Path(reader.remote.cache_dir) / "locations"
    map_path.parent.mkdir(parents=True, exist_ok=True)
    map_path.write_bytes(LocationMap.build([(gone, entries)]).encode())
    empty = _empty_store_reader(repo, reader, tmp_path)
    assert empty.read_manifest_range(mid, 10, 400_000) == data[10:400_000]
    assert gone not in LocationMap.parse(map_path.read_bytes(), "map").packs


def test_sequential_small_reads_read_ahead(repo_dir: Path, cli: Cli, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A file read 64 KiB at a time (io.BufferedReader, a parser) must not cost one
    request per chunk: sequential reads fetch ahead, growing up to 16 MiB."""
    import io

    monkeypatch.setenv("DVX_CACHE_SIZE", "0")  # no cache: every fetch is a request
    data = pseudo_random(8_000_000, 11)
    write(repo_dir / "s.bin", data)
    cli("add", "s.bin")
    cli(*_remote_args(str(tmp_path / "r"), {}))
    cli("push")
    repo = Repository(str(repo_dir))
    reader = _empty_store_reader(repo, open_remote(repo, None), tmp_path)
    reader.cache = None
    mid = read_pointer(str(repo_dir / "s.bin.dvx")).oid
    with reader.open_manifest(mid) as raw:
        f = io.BufferedReader(raw, 65536)  # type: ignore[arg-type]
        out = bytearray()
        while block := f.read(65536):
            out += block
    assert bytes(out) == data
    assert reader.range_requests < 12  # ~120 chunks
    assert reader.bytes_fetched < len(data) + 300_000  # nothing read twice


def test_an_index_entry_with_a_forged_length_is_refused_before_any_request(
        repo_dir: Path, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pack indexes are the remote's word: an entry whose length is not the one the
    (verified) manifest gives must not make the reader request it."""
    monkeypatch.setenv("DVX_CACHE_DIR", str(tmp_path / "uc"))
    data = pseudo_random(400_000, 8)
    write(repo_dir / "h.bin", data)
    cli("add", "h.bin")
    cli(*_remote_args(str(tmp_path / "r"), {}))
    cli("push")
    repo = Repository(str(repo_dir))
    manifest = repo.store.read_manifest(read_pointer(str(repo_dir / "h.bin.dvx")).oid)
    reader = open_remote(repo, None)
    real = LocationMap.parse(reader._refresh_map().encode(), "map")  # noqa: SLF001 (built the usual way)
    pack = real.packs[0]
    n, cid = manifest.chunks[1]
    loc = real.find(cid)
    assert loc is not None
    forged = [PackEntry(cid, KIND_CHUNK, loc.offset, 3 << 30)]  # "3 GiB"
    (Path(reader.remote.cache_dir) / "locations").write_bytes(LocationMap.build([(pack, forged)]).encode())
    empty = _empty_store_reader(repo, reader, tmp_path)
    with pytest.raises(CorruptObjectError, match="wrong length"):
        empty.read_range(manifest, manifest.chunks[0][0], manifest.chunks[0][0] + n)
    assert empty.range_requests == 0 and empty.bytes_fetched == 0


def test_location_map_parse_refuses_garbage_with_one_error() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    good = bytes.fromhex(json.loads((VECTORS / "remote_locations.json").read_text())["file_hex"])

    @settings(max_examples=300, deadline=None)
    @given(st.one_of(st.binary(max_size=400),
                     st.tuples(st.integers(0, len(good) - 1), st.integers(1, 255)).map(
                         lambda t: good[:t[0]] + bytes([good[t[0]] ^ t[1]]) + good[t[0] + 1:]),
                     st.integers(0, len(good) - 1).map(lambda n: good[:n])))
    def check(blob: bytes) -> None:
        with pytest.raises(CorruptObjectError):
            LocationMap.parse(blob, "map")

    check()


def _hand_made_remote(tmp_path: Path, objects: list[tuple[bytes, int, bytes, int]]) -> RemoteReader:
    """A directory remote holding one pack of ``(id, kind, stored bytes, encoding)``,
    written byte by byte as format.md §5 says, and a reader with an empty store."""
    from dvx.remote.layout import Remote
    from dvx.settings import RemoteConfig
    from dvx.store.local import Store
    from dvx.store.pack import PACK_HEADER, PACK_MAGIC, PACK_VERSION, encode_footer, encode_idx

    body = PACK_HEADER.pack(PACK_MAGIC, PACK_VERSION)
    entries = []
    for oid, kind, stored, comp in objects:
        entries.append(PackEntry(oid, kind, len(body), len(stored), comp))
        body += stored
    footer, name = encode_footer(entries)
    pack = body + footer
    root = tmp_path / "hand-remote"
    (root / "packs" / name[:2]).mkdir(parents=True)
    (root / "index").mkdir()
    (root / "dvx-remote.json").write_text('{"format": 1}')
    (root / "packs" / name[:2] / f"{name}.pack").write_bytes(pack)
    (root / "index" / f"{name}.idx").write_bytes(encode_idx(entries, len(pack)))
    state = tmp_path / "state"
    Store.create(str(tmp_path / "store"))
    remote = Remote(RemoteConfig("hand", str(root)), str(state), str(tmp_path))
    return RemoteReader(Store(str(tmp_path / "store")), remote, None)


def test_delta_entries_are_rebuilt_and_verified_and_other_encodings_refused(tmp_path: Path) -> None:
    """Remote packs written by DVX hold whole chunks only, but a reader meets what a
    remote holds: a delta (format.md §5.1) is rebuilt from its base and verified; a
    delta of a delta and an unknown encoding are refused."""
    from dvx.store.pack import COMP_DELTA, DELTA_HEADER

    base = pseudo_random(100_000, 21)
    target = base[:40_000] + b"the middle changed" + base[-50_000:]
    bid, tid = chunk_id(base), chunk_id(target)
    delta = DELTA_HEADER.pack(bid, 40_000, 50_000) + b"the middle changed"
    other = target[:1000] + b"!" + target[-2000:]
    oid = chunk_id(other)
    chain = DELTA_HEADER.pack(tid, 1000, 2000) + b"!"
    odd = pseudo_random(5000, 22)
    reader = _hand_made_remote(tmp_path, [(bid, KIND_CHUNK, base, 0), (tid, KIND_CHUNK, delta, COMP_DELTA),
                                          (oid, KIND_CHUNK, chain, COMP_DELTA),
                                          (chunk_id(odd), KIND_CHUNK, odd, 7)])
    m = Manifest(len(base) + len(target), b"\0" * 32, ((len(base), bid), (len(target), tid)))
    assert reader.read_range(m, 0, m.size) == base + target
    alone = RemoteReader(reader.store, reader.remote, None)  # the base not in the same batch
    assert alone.read_range(Manifest(len(target), b"", ((len(target), tid),)), 5, 60_000) == target[5:60_000]
    with pytest.raises(CorruptObjectError, match="not stored whole"):
        alone.read_range(Manifest(len(other), b"", ((len(other), oid),)), 0, 10)
    with pytest.raises(CorruptObjectError, match="unknown encoding 7"):
        alone.read_range(Manifest(len(odd), b"", ((len(odd), chunk_id(odd)),)), 0, 10)
    # a delta whose rebuilt bytes do not hash to its id is refused like any corruption
    bad = DELTA_HEADER.pack(bid, 40_000, 50_000) + b"the middle CHANGED"
    forged = _hand_made_remote(tmp_path / "2", [(bid, KIND_CHUNK, base, 0), (tid, KIND_CHUNK, bad, COMP_DELTA)])
    with pytest.raises(CorruptObjectError, match="hash mismatch"):
        forged.read_range(Manifest(len(target), b"", ((len(target), tid),)), 0, 10)
