"""The read API (issue #12, protocols/read.md): dvx.open / read / info / ls at any
revision, of a local repository or one named by a git URL, and its bad input."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import dvx
from dvx.access.source import forget_sources
from dvx.access.url import merge_options, parse_url
from dvx.errors import (
    CorruptObjectError,
    DvxError,
    GitError,
    MissingObjectError,
    NotTrackedError,
    ReadOnlyError,
    UsageError,
)
from tests.conftest import VECTORS, git, pseudo_random, write


@pytest.fixture(autouse=True)
def _fresh_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DVX_CACHE_DIR", str(tmp_path / "user-cache"))
    forget_sources()
    yield
    forget_sources()


BIG = 3_000_000


@pytest.fixture
def project(repo_dir: Path) -> dict[str, object]:
    """v1: data/ (a csv, a binary in a subdirectory), model.pt; v2: model.pt changed,
    data/a.csv changed; the work tree has an unsaved v3 of model.pt added."""
    big = pseudo_random(BIG, 7)
    write(repo_dir / "data" / "a.csv", "x,y\n1,2\n")
    write(repo_dir / "data" / "sub" / "b.bin", big)
    write(repo_dir / "model.pt", b"v1" * 5000)
    dvx.add(["data", "model.pt"])
    dvx.commit("v1")
    git("tag", "v1", cwd=repo_dir)
    v1 = git("rev-parse", "HEAD", cwd=repo_dir).strip()
    write(repo_dir / "model.pt", b"v2" * 5000)
    write(repo_dir / "data" / "a.csv", "x,y\n3,4\n")
    dvx.add(["data", "model.pt"])
    dvx.commit("v2")
    write(repo_dir / "model.pt", b"v3" * 5000)
    dvx.add(["model.pt"])
    return {"root": repo_dir, "big": big, "v1": v1}


def test_read_any_version_without_a_checkout(project: dict, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root = project["root"]
    assert dvx.read("model.pt", rev="v1") == b"v1" * 5000
    assert dvx.read("model.pt", rev=project["v1"]) == b"v1" * 5000
    assert dvx.read("model.pt", rev="HEAD") == b"v2" * 5000
    assert dvx.read("model.pt") == b"v3" * 5000  # rev None: the work tree's pointer
    assert dvx.read("data/a.csv", rev="v1", mode="r") == "x,y\n1,2\n"
    assert dvx.read("data/a.csv", rev="HEAD~1", mode="r") == "x,y\n1,2\n"
    assert dvx.read("data/sub/b.bin", rev="v1") == project["big"]
    # nothing was checked out: the work tree still has v3 and v2's csv
    assert (root / "model.pt").read_bytes() == b"v3" * 5000
    # repo= from elsewhere: relative paths start at repo=
    monkeypatch.chdir(tmp_path)
    assert dvx.read("model.pt", rev="v1", repo=str(root)) == b"v1" * 5000
    assert dvx.read("b.bin", rev="v1", repo=str(root / "data" / "sub")) == project["big"]
    assert dvx.read(str(root / "data" / "a.csv"), rev="v1", repo=str(root)) == b"x,y\n1,2\n"
    with dvx.Repository(str(root)) as r:
        assert dvx.read("model.pt", rev="v1", repo=r) == b"v1" * 5000


def test_open_is_a_seekable_verified_file(project: dict) -> None:
    big = project["big"]
    with dvx.open("data/sub/b.bin", rev="v1") as f:
        assert f.readable() and f.seekable() and not f.writable()
        assert f.raw.size == BIG and f.name == "data/sub/b.bin"
        assert f.read(10) == big[:10]
        for off in (1, BIG // 3, BIG - 70_000, 65_536 * 3 - 5):
            f.seek(off)
            assert f.read(100_000) == big[off:off + 100_000]
            assert f.tell() == min(BIG, off + 100_000)
        assert f.seek(-5, io.SEEK_END) == BIG - 5 and f.read() == big[-5:]
        f.seek(0)
        assert f.read() == big
    with pytest.raises(ValueError):
        f.read(1)
    with dvx.open("data/a.csv", rev="v1", mode="r") as t:
        assert t.readline() == "x,y\n" and t.read() == "1,2\n"
    with dvx.open("data/a.csv", rev="v1", mode="r", encoding="latin-1") as t:
        assert t.encoding == "latin-1"


def test_info_and_ls_at_a_revision(project: dict) -> None:
    n = dvx.info("data/sub/b.bin", rev="v1")
    assert (n.kind, n.size, n.files, n.tracked) == ("file", BIG, 1, "data")
    assert n.id is not None and len(n.id) == 64
    d = dvx.info("data", rev="v1")
    assert (d.kind, d.files, d.size) == ("tree", 2, BIG + 8)
    assert dvx.info("data/sub", rev="v1").kind == "tree"
    m = dvx.info("model.pt", rev="v1")
    assert (m.kind, m.size, m.tracked) == ("file", 10_000, "model.pt") and m.digest
    assert m.to_json()["b3"] == m.digest
    assert dvx.info("model.pt", rev="v1").id != dvx.info("model.pt", rev="HEAD").id
    assert dvx.info("", rev="v1").kind == "directory"
    # dvx.ls keeps its old behaviour
    rows = dvx.ls("data", rev="v1")
    assert [e.path for e in rows] == ["data/a.csv", "data/sub/b.bin"]
    assert [e.path for e in dvx.ls(rev="v1")] == ["data", "model.pt"]


def test_a_branch_resolves_afresh_on_every_call(project: dict) -> None:
    root = project["root"]
    assert dvx.read("model.pt", rev="main") == b"v2" * 5000
    dvx.commit("v3")  # the branch moves; the cached source must follow
    assert dvx.read("model.pt", rev="main") == b"v3" * 5000
    assert dvx.read("model.pt", rev="v1") == b"v1" * 5000
    git("tag", "-f", "v1", "HEAD", cwd=root)  # even a tag may move
    assert dvx.read("model.pt", rev="v1") == b"v3" * 5000


def test_data_added_by_another_process_is_seen(project: dict) -> None:
    """The store's index is refreshed when a chunk is missing (a fetch or add by
    another process since the source was opened)."""
    root = project["root"]
    assert dvx.read("model.pt") == b"v3" * 5000  # the source is open and warm
    code = "import dvx, pathlib; pathlib.Path('new.bin').write_bytes(b'n' * 70000); dvx.add(['new.bin'])"
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True,
                   env=dict(os.environ, PYTHONPATH=_pythonpath()))
    assert dvx.read("new.bin") == b"n" * 70000


def _pythonpath() -> str:
    return str(Path(__file__).resolve().parent.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")


# -- bad input --------------------------------------------------------------------------------

def test_a_path_not_tracked_says_which_revisions_have_it(project: dict) -> None:
    root = project["root"]
    git("rm", "-q", "--cached", "model.pt.dvx", cwd=root)
    git("commit", "-q", "-m", "untrack the model", cwd=root)
    with pytest.raises(NotTrackedError, match="model.pt is not tracked at HEAD") as e:
        dvx.read("model.pt", rev="HEAD")
    assert "it is tracked at" in (e.value.hint or "")
    assert project["v1"][:12] in (e.value.hint or "")
    with pytest.raises(NotTrackedError, match="nope.csv is not tracked at v1") as e2:
        dvx.open("data/nope.csv", rev="v1")  # inside a tracked directory
    assert "data/nope.csv" in str(e2.value)
    with pytest.raises(NotTrackedError, match="in the work tree"):
        dvx.read("missing")


def test_directories_links_and_modes_are_refused(project: dict) -> None:
    for p in ("data", "data/sub", ""):
        with pytest.raises(UsageError, match="is a directory, not a file"):
            dvx.open(p, rev="v1")
    with pytest.raises(ReadOnlyError, match="read-only"):
        dvx.open("model.pt", mode="wb")
    with pytest.raises(PermissionError):
        dvx.open("model.pt", mode="r+")
    with pytest.raises(UsageError, match="invalid mode"):
        dvx.open("model.pt", mode="rbq")
    with pytest.raises(UsageError, match="text mode"):
        dvx.open("model.pt", mode="rb", encoding="utf-8")


def test_a_path_no_tracked_data_can_have_is_a_usage_error(project: dict) -> None:
    """Regression: `.git` through fsspec, or a path with a NUL, was checked as the tracked
    path of a pointer and refused with advice to `git rm` a pointer file that does not
    exist (".git.dvx is refused ... rename or delete that pointer file")."""
    import fsspec

    fs = fsspec.filesystem("dvx", repo=str(project["root"]))
    for call in (lambda: fs.ls(".git"), lambda: fs.info(".dvx/config"), lambda: dvx.read("model.pt\0"),
                 lambda: dvx.read("data/a.csv\n", rev="v1")):
        with pytest.raises(UsageError, match="cannot name tracked data") as caught:
            call()
        assert ".dvx is refused" not in str(caught.value) and "git rm" not in (caught.value.hint or "")


def test_unknown_revision(project: dict) -> None:
    with pytest.raises(GitError, match="unknown revision 'nosuch'"):
        dvx.read("model.pt", rev="nosuch")
    with pytest.raises(GitError):
        dvx.info("model.pt", rev="HEAD~99")


def test_corrupt_chunk_is_refused_and_nothing_is_returned(project: dict) -> None:
    root = project["root"]
    with dvx.Repository(str(root)) as r:
        oid = bytes.fromhex(dvx.info("data/sub/b.bin", rev="v1").id or "")
        chunks = r.store.read_manifest(oid).chunks
        loc = r.store.locate(chunks[2][1])
        assert loc is not None
        path = r.store.pack_path(loc[0])
    os.chmod(path, 0o644)
    with open(path, "r+b") as p:
        p.seek(loc[2] + 100)
        byte = p.read(1)
        p.seek(loc[2] + 100)
        p.write(bytes([byte[0] ^ 0xFF]))
    forget_sources()  # drop the mapping made before the damage
    with pytest.raises(CorruptObjectError, match="hash mismatch"):
        dvx.read("data/sub/b.bin", rev="v1")
    with dvx.open("data/sub/b.bin", rev="v1") as f:
        start = chunks[0][0]
        f.seek(start)
        buf = bytearray(chunks[1][0] + chunks[2][0])
        with pytest.raises(CorruptObjectError):
            f.readinto(buf)  # spans the bad chunk: raises, returns nothing
        with pytest.raises(CorruptObjectError):
            f.raw.read(chunks[1][0] + chunks[2][0])


def test_a_stale_chunk_location_is_looked_up_again(project: dict) -> None:
    """Chunk locations are cached per manifest; after a repack (gc) one may point
    at the wrong place: the read verifies, refreshes and succeeds."""
    from dvx.access.files import resolve

    big = project["big"]
    src, node, _commit = resolve("data/sub/b.bin", "v1", None, None)
    assert node.oid is not None
    assert dvx.read("data/sub/b.bin", rev="v1") == big  # every location looked up
    locs = src.opened(node.oid).locs
    pack, offset = locs.slots[3]  # type: ignore[misc]
    locs.slots[3] = (pack, offset + 1)  # as if the pack had been rewritten
    start = sum(n for n, _ in src.opened(node.oid).manifest.chunks[:3])
    with dvx.open("data/sub/b.bin", rev="v1") as f:
        f.seek(start - 5)
        assert f.read(100) == big[start - 5:start + 95]
    assert locs.slots[3] == (pack, offset)


def test_missing_chunk_without_a_remote_names_the_chunk(project: dict, tmp_path: Path) -> None:
    """A repository whose store lacks the data and has no remote: the error names
    the chunk (with a remote reader, the remote too)."""
    root = project["root"]
    clone = tmp_path / "clone"
    git("clone", "-q", str(root), str(clone), cwd=tmp_path)
    with pytest.raises((MissingObjectError, DvxError)) as e:
        dvx.read("data/sub/b.bin", rev="v1", repo=str(clone))
    assert "not in the local store" in str(e.value) or "remote" in str(e.value)


# -- the URL grammar (protocols/read.md §1) ----------------------------------------------------

def test_url_vectors() -> None:
    vec = json.loads((VECTORS / "read_urls.json").read_text())
    assert len(vec["ok"]) > 10 and vec["refused"]
    for case in vec["ok"]:
        assert parse_url(case["url"]) == (case["path"], case["options"]), case
    for case in vec["refused"]:
        with pytest.raises(UsageError, match=case["error"].replace("?", r"\?")):
            parse_url(case["url"])
    assert merge_options({"rev": "v1"}, "u", rev="v1", repo="r") == {"rev": "v1", "repo": "r", "remote": None}
    with pytest.raises(UsageError, match="says rev='v1' but rev='v2'"):
        merge_options({"rev": "v1"}, "u", rev="v2")


# -- a repository named by a git URL: cloned once, then fetched -------------------------------

@pytest.fixture
def published(project: dict, tmp_path: Path) -> dict:
    """The project pushed to a directory remote and its git history to a bare repo."""
    root = project["root"]
    remote_dir = tmp_path / "remote"
    dvx.remote_add("origin", str(remote_dir), default=True)
    git("add", ".dvx/config", cwd=root)
    git("commit", "-q", "-m", "remote", cwd=root)
    dvx.push(all_commits=True)
    bare = tmp_path / "origin.git"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    git("push", "-q", str(bare), "main", "v1", cwd=root)
    return dict(project, bare=bare)


def test_read_from_a_git_url(published: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = str(published["bare"])
    monkeypatch.chdir(tmp_path)
    assert dvx.read("model.pt", rev="v1", repo=bare) == b"v1" * 5000
    assert dvx.read("model.pt", repo=bare) == b"v2" * 5000  # its default branch
    assert dvx.read("data/sub/b.bin", rev="v1", repo="file://" + bare) == published["big"]
    assert [e.path for e in dvx.ls("data", repo=bare, rev="v1")] == ["data/a.csv", "data/sub/b.bin"]
    assert dvx.info("data", repo=bare).kind == "tree"
    cache = tmp_path / "user-cache" / "repos"
    clones = [p for p in cache.iterdir() if p.is_dir()]
    assert len(clones) == 1  # bare and file://bare are one clone
    repo_dir = clones[0] / "repo"
    assert (clones[0] / "url").read_text().strip() == os.path.realpath(bare)
    assert sorted(p.name for p in repo_dir.iterdir()) == [".dvx", ".git"]  # no checkout
    # a new commit upstream: a new process (or forget_sources) fetches, never re-clones
    root = published["root"]
    write(root / "model.pt", b"v4" * 5000)
    dvx.add(["model.pt"], repo=str(root))
    dvx.commit("v4", repo=str(root))
    dvx.push(repo=str(root))
    git("push", "-q", bare, "main", cwd=root)
    git("tag", "v4", cwd=root)
    git("push", "-q", bare, "v4", cwd=root)
    inode = (repo_dir / ".git").stat().st_ino
    assert dvx.read("model.pt", rev="v4", repo=bare) == b"v4" * 5000  # unknown rev: fetched
    forget_sources()
    assert dvx.read("model.pt", repo=bare) == b"v4" * 5000
    assert (repo_dir / ".git").stat().st_ino == inode
    # the clone is not a work tree the user sees: the user's own repo is untouched
    assert "v4" in git("tag", cwd=repo_dir)


def test_unwritable_cache_reads_without_caching_and_warns_once(published: dict, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() == 0:
        blocked = tmp_path / "a-file"
        blocked.write_text("not a directory")
        monkeypatch.setenv("DVX_CACHE_DIR", str(blocked / "cache"))  # root ignores modes
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        monkeypatch.setenv("DVX_CACHE_DIR", str(ro / "cache"))
    import dvx.access.clones as clones

    monkeypatch.setattr(clones, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert dvx.read("model.pt", rev="v1", repo=str(published["bare"])) == b"v1" * 5000
        forget_sources()
        assert dvx.read("model.pt", rev="v1", repo=str(published["bare"])) == b"v1" * 5000
    mine = [w for w in caught if "cannot write the cache directory" in str(w.message)]
    assert len(mine) == 1


def test_a_url_that_is_not_a_dvx_repository(tmp_path: Path) -> None:
    bare = tmp_path / "plain.git"
    work = tmp_path / "plain"
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    write(work / "README", "hi")
    git("add", "README", cwd=work)
    git("commit", "-q", "-m", "x", cwd=work)
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    with pytest.raises(DvxError, match="is not a DVX repository"):
        dvx.read("README", repo=str(bare))
    with pytest.raises(GitError, match="cannot clone"):
        dvx.read("x", repo="file://" + str(tmp_path / "nothing-here.git"))


# -- data the local store lacks: read from the DVX remote (dvx/remote/reader.py) ---------------

def test_a_clone_with_an_empty_store_reads_ranges_from_the_remote(published: dict, tmp_path: Path) -> None:
    clone = tmp_path / "teammate"
    git("clone", "-q", "-b", "main", str(published["bare"]), str(clone), cwd=tmp_path)
    big = published["big"]
    with dvx.open("data/sub/b.bin", rev="v1", repo=str(clone)) as f:
        f.seek(1_000_000)
        assert f.read(100_000) == big[1_000_000:1_100_000]
    assert dvx.read("model.pt", rev="v1", repo=str(clone)) == b"v1" * 5000
    assert [e.path for e in dvx.ls("data", rev="v1", repo=str(clone))] == ["data/a.csv", "data/sub/b.bin"]
    # nothing was fetched into the clone's store: no second copy of the data
    with dvx.Repository(str(clone)) as r:
        assert not r.store.contains(bytes.fromhex(dvx.info("model.pt", rev="v1", repo=str(clone)).id or ""))


def test_a_chunk_missing_everywhere_is_named_with_the_remote(published: dict, tmp_path: Path) -> None:
    clone = tmp_path / "teammate"
    git("clone", "-q", "-b", "main", str(published["bare"]), str(clone), cwd=tmp_path)
    for pack in (tmp_path / "remote").rglob("*.pack"):
        pack.unlink()  # the remote lost its data
    with pytest.raises(DvxError) as e:  # MissingObjectError, or the remote's "pack is missing"
        dvx.read("data/sub/b.bin", rev="v1", repo=str(clone))
    assert "origin" in str(e.value)
    with pytest.raises(DvxError), dvx.open("model.pt", rev="v1", repo=str(clone)) as f:
        f.read()  # raises at open (the manifest) or at read: nothing is returned
