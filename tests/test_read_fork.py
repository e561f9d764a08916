"""Fork- and thread-safety of the read API (issue #12 item 4): PyTorch DataLoader
workers fork (or spawn) and read in parallel, through objects made before."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import dvx
from dvx.access.fs import DVXFileSystem
from dvx.access.source import forget_sources
from tests.conftest import git, pseudo_random, write

SIZE = 2_500_000
SEED = 11


@pytest.fixture(autouse=True)
def _fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DVX_CACHE_DIR", str(tmp_path / "user-cache"))
    forget_sources()
    yield
    forget_sources()


@pytest.fixture
def project(repo_dir: Path) -> Path:
    write(repo_dir / "data" / "big.bin", pseudo_random(SIZE, SEED))
    write(repo_dir / "data" / "small.txt", "hello\n")
    dvx.add(["data"])
    dvx.commit("v1")
    git("tag", "v1", cwd=repo_dir)
    write(repo_dir / "data" / "big.bin", b"changed")
    dvx.add(["data"])
    dvx.commit("v2")
    return repo_dir


def _check_in_child(f, fs: DVXFileSystem, root: str) -> bool:  # type: ignore[no-untyped-def]
    data = pseudo_random(SIZE, SEED)
    f.seek(1_000_000)
    ok = f.read(300_000) == data[1_000_000:1_300_000]
    ok &= fs.cat_file("data/big.bin", 5, 70_000) == data[5:70_000]
    with fs.open("data/big.bin") as g:
        g.seek(SIZE - 10)
        ok &= g.read() == data[-10:]
    ok &= dvx.read("data/big.bin", rev="v1", repo=root) == data
    ok &= dvx.read("data/big.bin", repo=root) == b"changed"
    return bool(ok)


def test_objects_made_before_os_fork_work_in_the_child(project: Path) -> None:
    data = pseudo_random(SIZE, SEED)
    fs = DVXFileSystem(repo=str(project), rev="v1")
    f = dvx.open("data/big.bin", rev="v1", repo=str(project))
    assert f.read(100) == data[:100]  # warm: mappings, caches, read pool used
    assert fs.cat_file("data/big.bin", 0, 10) == data[:10]
    with f:
        f.seek(0)
        assert len(f.read()) == SIZE
    f = dvx.open("data/big.bin", rev="v1", repo=str(project))
    f.read(10)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            code = 0 if _check_in_child(f, fs, str(project)) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    f.seek(2_000_000)
    assert f.read(10) == data[2_000_000:2_000_010]  # the parent's file is unharmed


def _mp_fork_worker(q) -> None:  # type: ignore[no-untyped-def]
    q.put(_check_in_child(_SHARED["f"], _SHARED["fs"], _SHARED["root"]))


_SHARED: dict = {}


def _mp_spawn_worker(fs_bytes: bytes, file_bytes: bytes, root: str, q) -> None:  # type: ignore[no-untyped-def]
    fs = pickle.loads(fs_bytes)
    f = pickle.loads(file_bytes)
    q.put(_check_in_child(f, fs, root))


def test_multiprocessing_fork_and_spawn(project: Path) -> None:
    fs = DVXFileSystem(repo=str(project), rev="v1")
    fs.cat_file("data/big.bin", 0, 10)
    f = fs.open("data/big.bin")
    f.read(10)
    _SHARED.update(f=f, fs=fs, root=str(project))
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_mp_fork_worker, args=(q,)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    assert results == [True, True]
    # spawn: a fresh interpreter gets the filesystem and an open file by pickle
    sctx = multiprocessing.get_context("spawn")
    sq = sctx.Queue()
    sp = sctx.Process(target=_mp_spawn_worker, args=(pickle.dumps(fs), pickle.dumps(f), str(project), sq))
    sp.start()
    assert sq.get(timeout=120) is True
    sp.join(60)
    assert sp.exitcode == 0


def test_parallel_threads_read_exactly(project: Path) -> None:
    data = pseudo_random(SIZE, SEED)
    fs = DVXFileSystem(repo=str(project), rev="v1")
    errors: list[str] = []

    def reader(n: int) -> None:
        try:
            for i in range(20):
                off = (n * 97_531 + i * 123_457) % (SIZE - 200_000)
                if fs.cat_file("data/big.bin", off, off + 150_000) != data[off:off + 150_000]:
                    errors.append(f"cat_file {n} {off}")
                with dvx.open("data/big.bin", rev="v1", repo=str(project)) as f:
                    f.seek(off)
                    if f.read(70_000) != data[off:off + 70_000]:
                        errors.append(f"open {n} {off}")
                if dvx.read("data/small.txt", rev="v1", repo=str(project)) != b"hello\n":
                    errors.append("small")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    forget_sources()  # threads race to open the source too
    threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
