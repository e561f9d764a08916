"""End-to-end: the dvx commands on awkward real data in real git repositories."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from blake3 import blake3

from tests.conftest import Cli, git, pseudo_random, run_dvx, write


def tree_digest(root: Path) -> dict[str, tuple[str, bytes | str, bool]]:
    """Everything under root: files (content, exec bit), links (target), empty dirs."""
    out: dict[str, tuple[str, bytes | str, bool]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p), False)
            elif p.is_file():
                out[rel] = ("file", p.read_bytes(), bool(p.stat().st_mode & stat.S_IXUSR))
            elif p.is_dir() and not os.listdir(p):
                out[rel] = ("dir", b"", False)
    return out


def awkward_dataset(root: Path) -> None:
    write(root / "empty.bin", b"")
    write(root / "unicode ünï 数据" / "spaced name.txt", "héllo wörld\n")
    write(root / "exact_min.bin", pseudo_random(16384, 1))
    write(root / "exact_max.bin", pseudo_random(262144, 2))
    write(root / "max_plus_one.bin", pseudo_random(262145, 3))
    write(root / "zeros.bin", bytes(3_000_000))
    write(root / "nested" / "a" / "b" / "c" / "deep.txt", "deep\n")
    write(root / "big.bin", pseudo_random(2_500_000, 4))
    run = write(root / "tools" / "run.sh", "#!/bin/sh\necho hi\n")
    run.chmod(0o755)
    (root / "empty_dir").mkdir()
    os.symlink("spaced name.txt", root / "unicode ünï 数据" / "link")
    os.symlink("../../outside", root / "nested" / "escape")  # recorded, never followed


def test_add_status_checkout_round_trip(repo_dir: Path, cli: Cli) -> None:
    data = repo_dir / "data"
    awkward_dataset(data)
    before = tree_digest(data)
    cli("add", "data")
    pointer = (repo_dir / "data.dvx").read_text()
    assert "kind: tree" in pointer and "files: 9" in pointer
    assert "/data" in (repo_dir / ".gitignore").read_text().splitlines()
    # git sees the pointer and .gitignore, not the data
    status = git("status", "--porcelain", "--untracked-files=all", cwd=repo_dir)
    assert "data.dvx" in status and "data/" not in status
    assert json.loads(cli("status", "--json").output)["clean"] is True

    import shutil
    shutil.rmtree(data)
    st = json.loads(cli("status", "--json").output)
    assert st["paths"][0]["state"] == "deleted"
    cli("checkout")
    assert tree_digest(data) == before
    assert json.loads(cli("status", "--json").output)["clean"] is True
    assert cli("fsck").exit_code == 0


def test_many_large_files_round_trip_through_reused_buffers(repo_dir: Path, cli: Cli) -> None:
    """Large files are read into pooled buffers that are reused once the pack writer
    has copied them out: several multi-block files added together (and written with
    direct I/O) must come back bit for bit, and fsck must find every chunk intact."""
    data = repo_dir / "big"
    data.mkdir()
    sizes = [9 << 20, (17 << 20) + 12345, (8 << 20) - 1, 3 << 20]
    for i, n in enumerate(sizes):
        (data / f"f{i}.bin").write_bytes(pseudo_random(n, 100 + i))
    (data / "dup.bin").write_bytes(pseudo_random(sizes[0], 100))  # same chunks again
    before = tree_digest(data)
    cli("add", "big")
    import shutil

    shutil.rmtree(data)
    cli("checkout")
    assert tree_digest(data) == before
    assert cli("fsck").exit_code == 0


def test_block_pool_reuses_released_buffers() -> None:
    import io

    from dvx.chunking import Chunker
    from dvx.workspace import BlockPool

    pool = BlockPool(keep=2)
    payload = pseudo_random(5 << 20, 3)
    seen = []
    out = bytearray()
    for block, ends in Chunker().iter_blocks(io.BytesIO(payload), block_size=1 << 20, pool=pool):
        assert ends[-1] == len(block)
        seen.append(id(block.obj))
        out += block
        pool.release(block)
    assert bytes(out) == payload
    assert len(set(seen)) < len(seen)  # buffers came back and were used again


def test_status_details_inside_directories(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "d" / "keep.txt", "keep")
    write(repo_dir / "d" / "change.txt", "v1")
    write(repo_dir / "d" / "sub" / "gone.txt", "bye")
    cli("add", "d")
    write(repo_dir / "d" / "change.txt", "v2")
    (repo_dir / "d" / "sub" / "gone.txt").unlink()
    write(repo_dir / "d" / "new.txt", "new")
    (repo_dir / "d" / "keep.txt").chmod(0o755)
    entry = json.loads(cli("status", "--json").output)["paths"][0]
    assert entry["state"] == "modified"
    assert entry["added"] == ["new.txt"]
    assert entry["modified"] == ["change.txt", "keep.txt"]
    assert entry["deleted"] == ["sub/gone.txt"]
    text = cli("status").output
    assert "modified: d/change.txt" in text and "deleted:  d/sub/gone.txt" in text


def test_readd_unchanged_is_instant_and_edits_store_little(repo_dir: Path, cli: Cli) -> None:
    big = write(repo_dir / "model.bin", pseudo_random(4_000_000, 9))
    cli("add", "model.bin")
    assert "unchanged model.bin" in cli("add", "model.bin").output
    store = repo_dir / ".dvx" / "store"
    size_before = sum(f.stat().st_size for f in store.rglob("*.pack"))
    with open(big, "r+b") as f:  # 10-byte insertion in the middle
        f.seek(2_000_000)
        rest = f.read()
        f.seek(2_000_000)
        f.write(b"0123456789" + rest)
    cli("add", "model.bin")
    growth = sum(f.stat().st_size for f in store.rglob("*.pack")) - size_before
    assert growth < 600_000, growth  # a couple of chunks, not the 4 MB file
    assert json.loads(cli("status", "--json").output)["clean"]


def test_checkout_never_clobbers_unsaved_changes(repo_dir: Path, cli: Cli) -> None:
    f = write(repo_dir / "data" / "a.txt", "saved")
    cli("add", "data")
    write(f, "unsaved work")
    res = cli("checkout", ok=False)
    assert "unsaved data: data/a.txt" in res.output and "--force" in res.output
    assert f.read_text() == "unsaved work"
    # an untracked extra file is unsaved too
    write(f, "saved")
    extra = write(repo_dir / "data" / "extra.txt", "mine")
    assert cli("checkout", ok=False).exit_code == 1
    assert extra.exists()
    cli("checkout", "--force")
    assert not extra.exists() and f.read_text() == "saved"


def test_checkout_overwrites_data_that_is_saved(repo_dir: Path, cli: Cli) -> None:
    f = write(repo_dir / "m.txt", "v1")
    cli("add", "m.txt")
    v1 = (repo_dir / "m.txt.dvx").read_text()
    write(f, "v2")
    cli("add", "m.txt")
    (repo_dir / "m.txt.dvx").write_text(v1)  # e.g. git checkout of an older pointer
    cli("checkout")  # v2 is in the store, so replacing it loses nothing
    assert f.read_text() == "v1"


def test_executable_bit_round_trips(repo_dir: Path, cli: Cli) -> None:
    f = write(repo_dir / "tool.sh", "#!/bin/sh\n")
    f.chmod(0o750)
    cli("add", "tool.sh")
    assert "exec: true" in (repo_dir / "tool.sh.dvx").read_text()
    f.unlink()
    cli("checkout", "tool.sh")
    assert os.stat(f).st_mode & stat.S_IXUSR


def test_ls_and_json(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "d" / "x.txt", "xx")
    write(repo_dir / "d" / "y" / "z.txt", "zzz")
    write(repo_dir / "f.bin", b"\0" * 10)
    cli("add", "d", "f.bin")
    top = json.loads(cli("ls", "--json").output)
    assert [(e["path"], e["kind"], e["size"]) for e in top] == [("d", "tree", 5), ("f.bin", "file", 10)]
    inner = json.loads(cli("ls", "d", "--json").output)
    assert [e["path"] for e in inner] == ["d/x.txt", "d/y/z.txt"]
    entry = json.loads(cli("ls", "f.bin", "--json").output)[0]
    assert entry["id"] == (repo_dir / "f.bin.dvx").read_text().split("id: ")[1][:64]


def test_b3_in_pointer_matches_plain_blake3(repo_dir: Path, cli: Cli) -> None:
    data = pseudo_random(1_500_000, 5)
    write(repo_dir / "x.bin", data)
    cli("add", "x.bin")
    assert f"b3: {blake3(data).hexdigest()}" in (repo_dir / "x.bin.dvx").read_text()


@pytest.mark.parametrize("bad", ["../outside.txt", "/etc/hostname", ".git/config", ".dvx/config"])
def test_paths_outside_repository_refused(repo_dir: Path, cli: Cli, bad: str) -> None:
    write(repo_dir.parent / "outside.txt", "x")
    res = cli("add", bad, ok=False)
    error, hint = res.output.strip().splitlines()
    assert error.startswith(f"error: {bad} is ") and "Traceback" not in res.output
    assert hint in ("hint: move the data into the repository first", "hint: pick a path in the work tree")


def test_symlinked_parent_escaping_repo_refused(repo_dir: Path, cli: Cli, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    write(outside / "secret.txt", "s")
    os.symlink(outside, repo_dir / "sneaky")
    res = cli("add", "sneaky/secret.txt", ok=False)
    assert "outside the repository" in res.output
    res = cli("add", "sneaky", ok=False)
    assert "symbolic link" in res.output


def test_symlink_inside_tracked_dir_is_not_followed(repo_dir: Path, cli: Cli, tmp_path: Path) -> None:
    outside = tmp_path / "big_outside"
    write(outside / "huge.bin", pseudo_random(100_000, 1))
    write(repo_dir / "d" / "real.txt", "r")
    os.symlink(outside, repo_dir / "d" / "out")
    cli("add", "d")
    entries = json.loads(cli("ls", "d", "--json").output)
    assert {e["path"]: e["kind"] for e in entries} == {"d/out": "link", "d/real.txt": "file"}
    assert entries[0]["target"] == str(outside)


def test_checkout_does_not_write_through_symlinks(repo_dir: Path, cli: Cli, tmp_path: Path) -> None:
    write(repo_dir / "d" / "sub" / "f.txt", "data")
    cli("add", "d")
    import shutil
    shutil.rmtree(repo_dir / "d" / "sub")
    victim = tmp_path / "victim"
    victim.mkdir()
    os.symlink(victim, repo_dir / "d" / "sub")  # attacker swaps a dir for a link
    cli("checkout", "--force")
    assert os.listdir(victim) == []
    assert (repo_dir / "d" / "sub").is_dir() and not (repo_dir / "d" / "sub").is_symlink()
    assert (repo_dir / "d" / "sub" / "f.txt").read_text() == "data"


def test_garbage_pointer_is_a_clean_error(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "x.txt", "x")
    cli("add", "x.txt")
    (repo_dir / "x.txt.dvx").write_bytes(b"\x00\x01garbage")
    res = cli("checkout", ok=False)
    error, hint = res.output.splitlines()
    assert error.startswith("error: x.txt.dvx:1: expected 'key: value'")
    assert hint == "hint: restore it with `git checkout -- x.txt.dvx` or re-add the data with `dvx add`"
    st = json.loads(cli("status", "--json", ok=False).output)
    assert st["paths"][0]["state"] == "broken-pointer"
    assert cli("fsck", ok=False).exit_code == 1


def test_unknown_format_version_refused(repo_dir: Path, cli: Cli) -> None:
    cfg = repo_dir / ".dvx" / "config"
    cfg.write_text(cfg.read_text().replace("format = 1", "format = 7"))
    res = cli("status", ok=False)
    assert "format 7" in res.output and "upgrade" in res.output


def test_unknown_extension_refused(repo_dir: Path, cli: Cli) -> None:
    cfg = repo_dir / ".dvx" / "config"
    cfg.write_text(cfg.read_text().replace("format = 1", "format = 1\nextensions = zstd-packs"))
    assert "zstd-packs" in cli("ls", ok=False).output


def test_missing_object_named(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "x.txt", "x")
    cli("add", "x.txt")
    import shutil
    shutil.rmtree(repo_dir / ".dvx" / "store" / "packs")
    (repo_dir / "x.txt").unlink()
    res = cli("checkout", ok=False)
    assert "not in the local store" in res.output and "dvx pull" in res.output


def test_not_a_repository(tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = cli("status", ok=False)
    assert "not a DVX repository" in res.output and "dvx init" in res.output


def test_init_is_idempotent_and_creates_git(tmp_path: Path, cli: Cli,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert "new git repository" in cli("init").output
    assert (tmp_path / ".git").is_dir()
    assert "Reinitialized" in cli("init").output
    git("status", cwd=tmp_path)


def test_add_inside_tracked_directory_refused(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "d" / "x.txt", "x")
    cli("add", "d")
    assert "inside the tracked directory d" in cli("add", "d/x.txt", ok=False).output


def test_file_changing_while_read_is_refused(repo_dir: Path) -> None:
    """hash_file compares the stat before and after reading."""
    from dvx.errors import DvxError
    from dvx.repo import Repository
    from dvx.workspace import hash_file

    repo = Repository(str(repo_dir))
    path = write(repo_dir / "grow.bin", pseudo_random(3_000_000, 1))

    class Growing:
        def __init__(self) -> None:
            self.real = repo.chunker

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(self.real, name)

        def iter_blocks(self, f, **kw):  # type: ignore[no-untyped-def]
            for item in self.real.iter_blocks(f, **kw):
                with open(path, "ab") as g:
                    g.write(b"more")
                yield item

    with pytest.raises(DvxError, match="changed while it was being read"):
        hash_file(str(path), "grow.bin", Growing(), None)  # type: ignore[arg-type]


def test_real_cli_subprocess(repo_dir: Path) -> None:
    write(repo_dir / "data" / "a.txt", "a")
    out = run_dvx("add", "data", cwd=repo_dir).stdout
    assert "added data" in out
    bad = run_dvx("add", "nope", cwd=repo_dir, check=False)
    assert bad.returncode == 1 and bad.stderr == "error: nope does not exist\nhint: check the path\n"


def test_fsck_flags_corrupted_store(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "d" / "one.txt", "one" * 1000)
    write(repo_dir / "d" / "two.txt", "two" * 1000)
    cli("add", "d")
    pack = next((repo_dir / ".dvx" / "store" / "packs").glob("*.pack"))
    pack.chmod(0o644)
    raw = bytearray(pack.read_bytes())
    pos = raw.find(b"one" * 10)
    raw[pos] ^= 0xFF
    pack.write_bytes(bytes(raw))
    res = cli("fsck", "--json", ok=False)
    report = json.loads(res.output)
    assert not report["ok"]
    (bad,) = [p for p in report["problems"] if p["what"] == "object"]
    assert "corrupted" in bad["message"] and bad["used_by"] == ["d/one.txt"]
    text = cli("fsck", ok=False).output
    assert "used by d/one.txt" in text
    # the corrupted chunk is never written into the work tree
    (repo_dir / "d" / "one.txt").unlink()
    assert "corrupted" in cli("checkout", ok=False).output
    assert not (repo_dir / "d" / "one.txt").exists()


def test_disk_full_is_clean_and_loses_nothing(tmp_path: Path, cli: Cli,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        monkeypatch.chdir(mnt)
        cli("init")
        write(mnt / "small.txt", "keep me")
        cli("add", "small.txt")
        pointer_before = (mnt / "small.txt.dvx").read_text()
        write(mnt / "big.bin", pseudo_random(1_200_000, 1))
        res = cli("add", "big.bin", ok=False)
        assert "no space left on device" in res.output
        assert not (mnt / "big.bin.dvx").exists()
        assert os.listdir(mnt / ".dvx" / "store" / "tmp") == []
        assert (mnt / "small.txt.dvx").read_text() == pointer_before
        cli("fsck")
    finally:
        os.chdir(tmp_path)
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_status_reports_data_missing_from_store(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "d" / "a.txt", "a")
    cli("add", "d")
    import shutil
    shutil.rmtree(repo_dir / ".dvx" / "store")
    entry = json.loads(cli("status", "--json").output)["paths"][0]
    assert entry["state"] == "not-in-store" and "dvx add d" in entry["message"]
    assert "unchanged" not in cli("add", "d").output  # stored again, not skipped
    assert json.loads(cli("status", "--json").output)["clean"]
    cli("fsck")


def test_cython_scanner_matches_reference(repo_dir: Path) -> None:
    from dvx.workspace import _scan_tree, scan_dir, scan_dir_reference

    assert _scan_tree is not None, "the Cython scanner must be built"
    root = repo_dir / "scan"
    awkward_dataset(root)
    (root / "nested" / "a" / "fifo").parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(root / "nested" / "a" / "fifo")  # not data: reported by both
    write(root / "bad\udcff name.bin", "x")  # not UTF-8 on disk: decoded with surrogateescape
    fast, ref = scan_dir(str(root), "scan"), scan_dir_reference(str(root), "scan")
    assert fast.files == ref.files and fast.links == ref.links and fast.dirs == ref.dirs
    assert fast.special == ref.special and list(fast.special) == ["nested/a/fifo"]
    assert len(fast.files) == 10 and "nested/escape" in fast.links and "empty_dir" in fast.dirs


def test_batch_file_reader_matches_reference(repo_dir: Path) -> None:
    """``dvx._scan.read_files`` (Cython, GIL released) and its pure-Python reference
    return the same bytes, stats and errors: a missing file, a symlink (never
    followed: ELOOP), a directory, a file larger than expected (one extra byte read,
    so the caller sees the growth), an empty file."""
    import errno

    from dvx._scan import read_files  # type: ignore[import-not-found]

    from dvx.workspace import read_files_reference

    root = repo_dir / "rf"
    root.mkdir()
    write(root / "a.txt", "hello")
    write(root / "empty", "")
    (root / "grew.bin").write_bytes(b"12345678")
    (root / "u n\u00efcode.bin").write_bytes(pseudo_random(5000, 1))
    os.symlink("a.txt", root / "link")
    (root / "dir").mkdir()
    names = ["a.txt", "empty", "grew.bin", "u n\u00efcode.bin", "missing", "link", "dir"]
    sizes = [5, 0, 4, 5000, 3, 5, 0]
    paths = [os.fsencode(root / n) for n in names]
    fast, ref = read_files(paths, sizes), read_files_reference(paths, sizes)
    assert fast[1] == ref[1]
    res = fast[1]
    assert res[4] == errno.ENOENT and res[5] == errno.ELOOP and res[6] == errno.EISDIR
    for i in range(4):
        off, n, st = res[i]
        assert fast[0][off:off + n] == ref[0][off:off + n] == (root / names[i]).read_bytes()[:sizes[i] + 1]
        assert st[1] == (root / names[i]).stat().st_size
    assert res[2][1] == 5  # expected 4 bytes, read 5: growth is visible


def test_small_file_changed_or_vanished_during_add(repo_dir: Path, cli: Cli) -> None:
    """A small file that disappears between the scan and the read is a clean error."""
    from dvx.errors import DvxError
    from dvx.repo import Repository
    from dvx.workspace import add_small_files, scan_dir

    d = repo_dir / "d"
    d.mkdir()
    write(d / "a.txt", "one")
    write(d / "b.txt", "two")
    scan = scan_dir(str(d), "d")
    (d / "b.txt").unlink()
    repo = Repository(str(repo_dir))
    with repo.store.writer() as w, pytest.raises(DvxError, match="d/b.txt"):
        list(add_small_files(str(d), "d", sorted(scan.files), scan.files, repo.chunker, w))
    write(d / "b.txt", "two, longer now")
    with repo.store.writer() as w, pytest.raises(DvxError, match="changed while it was being read"):
        list(add_small_files(str(d), "d", sorted(scan.files), scan.files, repo.chunker, w))


def test_kill_at_any_moment_leaves_a_readable_store(repo_dir: Path) -> None:
    """SIGKILL `dvx add` at several moments; the store stays consistent and a re-run
    finishes the job."""
    import random
    import signal
    import sys
    import time as _time

    write(repo_dir / "data" / "big.bin", pseudo_random(40_000_000, 3))
    for i in range(60):
        write(repo_dir / "data" / "small" / f"{i}.txt", f"file {i}" * 50)
    rng = random.Random(7)
    env = dict(os.environ, DVX_NO_PROGRESS="1")
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-m", "dvx", "add", "data"], cwd=repo_dir, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _time.sleep(rng.uniform(0.15, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        fsck = run_dvx("fsck", "--json", cwd=repo_dir, check=False)
        report = json.loads(fsck.stdout)
        # a pointer, if written, names only objects that exist; nothing is corrupted
        assert report["ok"], report["problems"]
        if (repo_dir / "data.dvx").exists():
            run_dvx("checkout", "--force", cwd=repo_dir)
        (repo_dir / "data.dvx").unlink(missing_ok=True)
    run_dvx("add", "data", cwd=repo_dir)
    assert json.loads(run_dvx("status", "--json", cwd=repo_dir).stdout)["clean"]
    assert json.loads(run_dvx("fsck", "--json", cwd=repo_dir).stdout)["ok"]


def test_small_edit_in_a_large_file_is_stored_as_a_delta(repo_dir: Path, cli: Cli, tmp_path: Path) -> None:
    big = write(repo_dir / "model.bin", pseudo_random(8_000_000, 21))
    cli("add", "model.bin")
    store = repo_dir / ".dvx" / "store"
    before = sum(f.stat().st_size for f in store.rglob("*.pack"))
    data = big.read_bytes()
    edited = data[:5_000_000] + b"0123456789" + data[5_000_000:]
    big.write_bytes(edited)
    cli("add", "model.bin")
    growth = sum(f.stat().st_size for f in store.rglob("*.pack")) - before
    assert growth < 20_000, growth  # the 10 new bytes, a chunk list and a manifest head
    big.unlink()
    cli("checkout")
    assert big.read_bytes() == edited
    assert json.loads(cli("fsck", "--json").output)["ok"]


def test_gc_keeps_the_base_of_a_live_delta(repo_dir: Path, cli: Cli) -> None:
    # the base chunk sits in a pack that is mostly garbage, so gc rewrites that pack:
    # the base must be copied even though no pointer reaches it directly
    write(repo_dir / "junk.bin", pseudo_random(3_000_000, 30))
    model = write(repo_dir / "model.bin", pseudo_random(1_500_000, 31))
    cli("add", "junk.bin", "model.bin")
    (repo_dir / "junk.bin.dvx").unlink()
    data = model.read_bytes()
    edited = data[:700_000] + b"0123456789" + data[700_000:]
    model.write_bytes(edited)
    cli("add", "model.bin")
    cli("commit", "-m", "only the edited model")
    import time as _time
    old_t = _time.time() - 7200
    for f in (repo_dir / ".dvx" / "store" / "packs").iterdir():
        os.utime(f, (old_t, old_t))
    rep = json.loads(cli("gc", "--json").output)
    assert rep["packs_rewritten"] or rep["packs_deleted"]
    model.unlink()
    cli("checkout")
    assert model.read_bytes() == edited
    assert json.loads(cli("fsck", "--json").output)["ok"]


def test_remote_packs_hold_whole_chunks(repo_dir: Path, cli: Cli, tmp_path: Path) -> None:
    from dvx.store.pack import read_footer

    big = write(repo_dir / "m.bin", pseudo_random(3_000_000, 22))
    cli("add", "m.bin")
    data = big.read_bytes()
    big.write_bytes(data[:1_000_000] + b"!" + data[1_000_000:])
    cli("add", "m.bin")
    cli("remote", "add", "r", str(tmp_path / "remote"), "--default")
    cli("push")
    packs = list((tmp_path / "remote" / "packs").rglob("*.pack"))
    assert packs and all(e.comp == 0 for p in packs for e in read_footer(str(p))[0])
    import shutil
    shutil.rmtree(repo_dir / ".dvx" / "store")
    big.unlink()
    cli("pull")
    assert big.read_bytes() == data[:1_000_000] + b"!" + data[1_000_000:]
