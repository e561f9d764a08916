"""Remote safety (issue #8): silent servers, leftovers of killed uploads, repairing a
damaged local store from a remote, missing remote directories, bytes fetched once,
and one bad version not blocking a push. Real servers, real repositories, no mocks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import servers
from tests.conftest import Cli, git, pseudo_random, write
from tests.test_remote_conformance import add_remote
from tests.test_remote_faults import error_and_hint, s3_remote


def _dvx(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # a hang guard only: the command is expected to fail within seconds with these options
    return subprocess.run([sys.executable, "-m", "dvx", *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, DVX_NO_PROGRESS="1"), timeout=120)


# -- 1. a server that accepts connections and never answers ---------------------------

def _silent_remote(kind: str, port: int) -> tuple[str, dict[str, str]]:
    endpoint = f"http://127.0.0.1:{port}"
    if kind == "s3":
        return "s3://bucket/p", {"endpoint_url": endpoint, "key": "a", "secret": "b"}
    if kind == "gcs":
        return "gs://bucket/p", {"endpoint_url": endpoint, "token": "anon", "project": "p"}
    return "az://container/p", {"connection_string": (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={servers.AZURITE_KEY};"
        f"BlobEndpoint={endpoint}/devstoreaccount1;")}


@pytest.mark.parametrize("kind", ["s3", "gcs", "az"])
def test_silent_server_fails_with_a_clear_error_after_retrying(kind: str, repo_dir: Path, cli: Cli) -> None:
    """Every backend: DVX's timeouts and retry budget, not the SDK's own schedule
    (gcsfs alone took ~1.5 min, the Azure SDK ~2 min to give up)."""
    silent = servers.SilentServer()
    try:
        write(repo_dir / "x.bin", pseudo_random(10_000, 1))
        cli("add", "x.bin")
        url, opts = _silent_remote(kind, silent.port)
        add_remote(cli, (url, {**opts, "connect_timeout": "1", "read_timeout": "1", "retries": "1"}))
        start = time.monotonic()
        proc = _dvx("push", cwd=repo_dir)
        took = time.monotonic() - start
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        # progress while retrying, then one error line naming the remote and what to do
        assert any(x.startswith("note:") and "retrying" in x and "attempt 2 of 2" in x for x in lines), lines
        error = error_and_hint(proc.stderr)
        assert "'origin'" in error and "no answer within 1 s" in error and "read_timeout" in error
        assert "2 attempts" in error
        assert silent.accepted >= 2  # it really was asked (connection check + attempts)
        assert proc.stdout == ""
        # 2 attempts of 1 s and a 0.5 s pause, plus start-up: far from the SDKs' minutes
        assert took < 20, took
    finally:
        silent.close()


def test_timeout_options_are_validated_and_not_passed_to_fsspec(s3_server, repo_dir: Path, cli: Cli,
                                                                tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = cli("remote", "add", "bad", str(tmp_path / "r"), "-o", "read_timeout=soon", ok=False)
    assert "read_timeout='soon' is not valid" in error_and_hint(res.output)
    res = cli("remote", "add", "bad", str(tmp_path / "r"), "-o", "retries=1.5", ok=False)
    assert "retries='1.5' is not valid" in error_and_hint(res.output)
    url, opts = s3_remote(s3_server)
    write(repo_dir / "x.bin", pseudo_random(300_000, 2))
    cli("add", "x.bin")
    add_remote(cli, (url, {**opts, "read_timeout": "30", "connect_timeout": "2", "retries": "0"}))
    assert json.loads(cli("push", "--json").output)["roots"] == 1
    # a directory remote takes (and needs) none of them, but accepts them
    cli("remote", "add", "d", str(tmp_path / "dir-remote"), "-o", "read_timeout=1")
    cli("push", "-r", "d")
    assert json.loads(cli("fsck", "--remote", "d", "--json").output)["ok"]


# -- 2. temporary files of killed uploads on a directory remote -----------------------

def test_remote_gc_and_fsck_see_temporary_files_of_killed_uploads(repo_dir: Path, cli: Cli,
                                                                  tmp_path: Path) -> None:
    remote = tmp_path / "r"
    write(repo_dir / "d.bin", pseudo_random(200_000, 3))
    cli("add", "d.bin")
    add_remote(cli, (str(remote), {}))
    cli("push")
    # what `kill -9` during an upload leaves: the temporary file of the atomic write
    old = [write(remote / "packs" / "ab" / ".tmp-deadbeefdeadbeef", b"x" * 5000),
           write(remote / "index" / ".tmp-0123456789abcdef", b"y" * 100)]
    young = write(remote / "packs" / "cd" / ".tmp-feedfacefeedface", b"z" * 70)
    day_ago = time.time() - 2 * 86400
    for p in old:
        os.utime(p, (day_ago, day_ago))
    rep = json.loads(cli("fsck", "--remote", "origin", "--json").output)
    assert rep["ok"] and rep["temporary_files"] == 3 and rep["temporary_bytes"] == 5170
    assert "gc --remote origin" in rep["notes"][0]
    text = cli("fsck", "--remote", "origin").output
    assert "note: 3 temporary files of interrupted uploads" in text
    rep = json.loads(cli("gc", "--remote", "origin", "--dry-run", "--json").output)
    assert rep["temporary_deleted"] == 2 and rep["temporary_kept_young"] == 1
    assert all(p.exists() for p in old)
    rep = json.loads(cli("gc", "--remote", "origin", "--json").output)
    assert rep["temporary_deleted"] == 2 and rep["temporary_kept_young"] == 1  # a push may be running
    assert rep["bytes_reclaimed"] == 5100 and rep["packs_deleted"] == []
    assert not any(p.exists() for p in old) and young.exists()
    assert json.loads(cli("fsck", "--remote", "origin", "--download", "--json").output)["temporary_files"] == 1


def test_killed_push_leaves_temporaries_that_gc_removes(repo_dir: Path, cli: Cli, tmp_path: Path) -> None:
    """A real kill: SIGKILL a pushing process while it writes the remote's files."""
    import signal

    remote = tmp_path / "r"
    write(repo_dir / "big.bin", pseudo_random(40_000_000, 4))
    cli("add", "big.bin")
    add_remote(cli, (str(remote), {}))
    for _ in range(20):  # until a kill lands inside a temporary write (usually the first)
        proc = subprocess.Popen([sys.executable, "-m", "dvx", "push"], cwd=repo_dir,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None \
                and not list(remote.rglob(".tmp-*")):
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if list(remote.rglob(".tmp-*")):
            break
        shutil.rmtree(remote / "packs", ignore_errors=True)
        shutil.rmtree(remote / "index", ignore_errors=True)
        shutil.rmtree(remote / "roots", ignore_errors=True)
        shutil.rmtree(repo_dir / ".dvx" / "state", ignore_errors=True)
    temps = list(remote.rglob(".tmp-*"))
    assert temps
    rep = json.loads(cli("fsck", "--remote", "origin", "--json").output)
    assert rep["temporary_files"] == len(temps)
    rep = json.loads(cli("gc", "--remote", "origin", "--grace", "0", "--json").output)
    assert rep["temporary_deleted"] == len(temps)
    assert not list(remote.rglob(".tmp-*"))
    cli("push")
    assert json.loads(cli("fsck", "--remote", "origin", "--download", "--json").output)["ok"]


# -- 3. repairing a damaged local store from a remote ---------------------------------

def _flip_byte_of(pack: Path, offset: int) -> None:
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
    os.chmod(pack, 0o444)


def test_fsck_repair_restores_a_corrupted_pack_from_the_remote(repo_dir: Path, cli: Cli,
                                                               tmp_path: Path) -> None:
    from dvx.store.pack import read_footer

    pushed = pseudo_random(2_000_000, 5)
    local_only = pseudo_random(300_000, 6)
    write(repo_dir / "pushed.bin", pushed)
    write(repo_dir / "local.bin", local_only)
    cli("add", "pushed.bin", "local.bin")  # one pack holds both
    add_remote(cli, (str(tmp_path / "r"), {}))
    cli("push", "pushed.bin")  # only one of them is on the remote
    (pack,) = (repo_dir / ".dvx" / "store" / "packs").glob("*.pack")
    entries, _ = read_footer(str(pack))
    big = max(entries, key=lambda e: e.length)  # a chunk of pushed.bin
    _flip_byte_of(pack, big.offset + big.length // 2)
    (repo_dir / "pushed.bin").unlink()
    assert "corrupted" in error_and_hint(cli("checkout", ok=False).output)
    bad = json.loads(cli("fsck", "--json", ok=False).output)
    assert not bad["ok"] and "corrupted" in bad["problems"][0]["message"]
    assert "nothing to fetch" in cli("fetch").output  # what the issue saw: fetch cannot help
    res = cli("fsck", "--repair")
    assert "moved 1 damaged packs to .dvx/store/damaged/ (1 objects could not be read back)" in res.output
    assert "restored 1 versions from origin" in res.output and res.output.rstrip().endswith(": ok")
    assert json.loads(cli("fsck", "--json").output)["ok"]
    cli("checkout")
    assert (repo_dir / "pushed.bin").read_bytes() == pushed
    (repo_dir / "local.bin").unlink()
    cli("checkout")  # the sound objects of the damaged pack were kept
    assert (repo_dir / "local.bin").read_bytes() == local_only
    assert (repo_dir / ".dvx" / "store" / "damaged" / pack.name).exists()  # nothing deleted


def test_fsck_repair_restores_a_missing_pack_and_reports_what_it_cannot(repo_dir: Path, cli: Cli,
                                                                         tmp_path: Path) -> None:
    write(repo_dir / "a.bin", pseudo_random(500_000, 7))
    cli("add", "a.bin")
    add_remote(cli, (str(tmp_path / "r"), {}))
    cli("push")
    write(repo_dir / "b.bin", pseudo_random(500_000, 8))
    cli("add", "b.bin")  # never pushed
    for p in (repo_dir / ".dvx" / "store" / "packs").glob("*.pack"):
        p.unlink()  # every pack lost, the indexes left
    res = cli("fsck", "--repair", "--json", ok=False)
    rep = json.loads(res.output[res.output.index("{"):])
    assert rep["repair"]["versions_restored"] == 1
    assert len(rep["repair"]["not_restored"]) == 1 and rep["repair"]["not_restored"][0].startswith("b.bin:")
    assert "does not have the data of b.bin" in rep["repair"]["not_restored"][0]
    assert all("b.bin" in " ".join(p["used_by"]) for p in rep["problems"])  # only b.bin is still bad
    (repo_dir / "a.bin").unlink()
    cli("checkout", "a.bin")
    assert (repo_dir / "a.bin").read_bytes() == pseudo_random(500_000, 7)


# -- 4. a directory remote whose directory is missing ---------------------------------

def test_missing_remote_directory_is_never_created_silently(repo_dir: Path, cli: Cli, tmp_path: Path) -> None:
    # remote add: creates the directory (a new remote), but not a missing parent
    line = error_and_hint(cli("remote", "add", "nas", str(tmp_path / "unmounted" / "proj"), ok=False).output)
    assert "unmounted does not exist" in line and "mounted" in line
    assert not (tmp_path / "unmounted").exists()
    remote = tmp_path / "r"
    assert f"created directory {remote}" in cli("remote", "add", "origin", str(remote), "--default").output
    write(repo_dir / "d.txt", "v1")
    cli("add", "d.txt")
    cli("commit", "-m", "v1")
    cli("push")
    # the drive is unmounted (or the path was a typo in a teammate's config)
    shutil.rmtree(remote)
    line = error_and_hint(cli("push", ok=False).output)  # not "everything is already there"
    assert f"directory {remote} does not exist" in line
    write(repo_dir / "d.txt", "v2")
    cli("add", "d.txt")
    line = error_and_hint(cli("push", ok=False).output)
    assert f"directory {remote} does not exist" in line and "--create" in line and "'origin'" in line
    assert not remote.exists()
    line = error_and_hint(cli("fsck", "--remote", "origin", ok=False).output)
    assert f"directory {remote} does not exist" in line
    line = error_and_hint(cli("gc", "--remote", "origin", ok=False).output)
    assert f"directory {remote} does not exist" in line
    shutil.rmtree(repo_dir / ".dvx" / "store")
    line = error_and_hint(cli("pull", ok=False).output)
    assert f"directory {remote} does not exist" in line
    # --create: the user says it is a new remote
    write(repo_dir / "d.txt", "v3")
    cli("add", "d.txt")
    cli("push", "--create")
    assert json.loads(cli("fsck", "--remote", "origin", "--json").output)["roots"] == 1


# -- 5. each byte fetched once; distinct objects counted once -------------------------

def _example_data(root: Path) -> None:
    """The data of .dvx-example/make_data.py."""
    from blake3 import blake3

    for split, n in (("train", 40), ("val", 10)):
        for i in range(n):
            write(root / "data" / split / f"img_{i:04d}.bin",
                  blake3(f"{split}{i}".encode()).digest(length=20_000 + 37 * i))
    write(root / "data" / "labels.csv",
          "file,label\n" + "".join(f"img_{i:04d}.bin,{i % 3}\n" for i in range(40)))
    write(root / "models" / "model.pt", blake3(b"weights").digest(length=3_000_000))


def test_pull_reads_each_remote_byte_at_most_once(repo_dir: Path, cli: Cli, tmp_path: Path) -> None:
    remote = tmp_path / "r"
    _example_data(repo_dir)
    cli("remote", "add", "origin", str(remote), "--default")
    cli("add", "data", "models/model.pt")
    cli("commit", "-m", "first")
    with open(repo_dir / "models" / "model.pt", "r+b") as f:  # .dvx-example/train.py
        f.seek(1_000_000)
        f.write(b"\x42" * 4096)
    cli("add", "models/model.pt")
    cli("commit", "-m", "fine-tuned")
    cli("push")
    held = sum(p.stat().st_size for p in remote.rglob("*.pack"))
    clone = tmp_path / "clone"
    git("clone", "-q", str(repo_dir), str(clone), cwd=tmp_path)
    os.chdir(clone)
    rep = json.loads(cli("pull", "--json").output)
    assert sorted(rep["checkout"]) == ["data", "models/model.pt"]
    assert rep["bytes_downloaded"] <= held, (rep, held)
    assert (clone / "models" / "model.pt").read_bytes() == (repo_dir / "models" / "model.pt").read_bytes()


def test_remote_fsck_counts_distinct_objects(repo_dir: Path, cli: Cli, tmp_path: Path) -> None:
    from dvx.ops.revs import workspace_pointers
    from dvx.repo import Repository
    from dvx.store.reach import reachable, root_kind

    cli("remote", "add", "origin", str(tmp_path / "r"), "--default")
    write(repo_dir / "d" / "a.bin", pseudo_random(400_000, 9))
    write(repo_dir / "d" / "b.txt", "b")
    cli("add", "d")
    cli("commit", "-m", "v1")
    repo = Repository.find(str(repo_dir))
    roots = [workspace_pointers(repo)["d"]]
    write(repo_dir / "d" / "b.txt", "b2")  # a second version sharing nearly everything
    cli("add", "d")
    cli("commit", "-m", "v2")
    repo = Repository.find(str(repo_dir))
    roots.append(workspace_pointers(repo)["d"])
    cli("push", "--all-commits")
    distinct: dict[bytes, int] = {}
    for p in roots:
        reachable(repo.store, [(p.oid, root_kind(p.kind))], seen=distinct)
    for extra in ([], ["--download"]):
        rep = json.loads(cli("fsck", "--remote", "origin", "--json", *extra).output)
        assert rep["ok"] and rep["roots"] == 2
        assert rep["objects"] == len(distinct), (rep, len(distinct))


# -- 6. one version with missing local data does not block a push ---------------------

def test_push_skips_a_version_with_missing_data_and_pushes_the_rest(repo_dir: Path, cli: Cli,
                                                                    tmp_path: Path) -> None:
    store = repo_dir / ".dvx" / "store" / "packs"
    write(repo_dir / "good.bin", pseudo_random(300_000, 10))
    cli("add", "good.bin")
    before = set(store.iterdir())
    write(repo_dir / "lost.bin", pseudo_random(300_000, 11))
    cli("add", "lost.bin")  # its own pack
    for p in set(store.iterdir()) - before:
        p.unlink()
    add_remote(cli, (str(tmp_path / "r"), {}))
    res = cli("push", ok=False)
    error = [x for x in res.output.splitlines() if x.startswith("error:")]
    assert len(error) == 1 and "lost.bin" in error[0] and "the rest was pushed" in error[0]
    assert "uploaded" in res.output
    rep = json.loads(cli("fsck", "--remote", "origin", "--json").output)
    assert rep["ok"] and rep["roots"] == 1
    res = cli("push", "--json", ok=False)  # not remembered as pushed: still reported
    assert json.loads(res.output[res.output.index("{"):res.output.rindex("}") + 1])["missing_locally"]
    # a teammate gets the good one
    (repo_dir / "good.bin").unlink()
    shutil.rmtree(repo_dir / ".dvx" / "store")
    cli("pull", "good.bin")
    assert (repo_dir / "good.bin").read_bytes() == pseudo_random(300_000, 10)
