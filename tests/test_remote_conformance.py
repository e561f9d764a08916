"""One conformance suite that every backend passes: directory, S3 (moto), GCS
(fake-gcs-server) and Azure (Azurite), all real servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from dvx.remote.storage import KeyNotFound, RemoteStorage, parse_url
from tests.conftest import Cli, git, pseudo_random, write


def storage(remote_url) -> RemoteStorage:  # type: ignore[no-untyped-def]
    url, opts = remote_url
    return RemoteStorage(parse_url("t", url), opts)


def add_remote(cli: Cli, remote_url, name: str = "origin") -> None:  # type: ignore[no-untyped-def]
    url, opts = remote_url
    args = ["remote", "add", name, url, "--default", "--local"]
    for k, v in opts.items():
        args += ["-o", f"{k}={v}"]
    cli(*args)


def test_storage_interface(remote_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    st = storage(remote_url)
    st.ensure_root()
    assert not st.exists("a/b.bin")
    with pytest.raises(KeyNotFound):
        st.read("a/b.bin")
    with pytest.raises(KeyNotFound):
        st.size("a/b.bin")
    with pytest.raises(KeyNotFound):
        st.read_range("a/b.bin", 0, 10)
    with pytest.raises(KeyNotFound):
        st.download("a/b.bin", str(tmp_path / "none.bin"))
    data = pseudo_random(300_000, 1)
    st.write("a/b.bin", data)
    assert st.exists("a/b.bin") and st.size("a/b.bin") == len(data)
    assert st.read("a/b.bin") == data
    assert st.read_range("a/b.bin", 1000, 5000) == data[1000:5000]
    assert st.read_range("a/b.bin", len(data) - 10, len(data)) == data[-10:]
    src = tmp_path / "up.bin"
    src.write_bytes(data[::-1])
    st.upload("c/up.bin", str(src))
    st.download("c/up.bin", str(tmp_path / "down.bin"))
    assert (tmp_path / "down.bin").read_bytes() == data[::-1]
    keys = sorted(k for k, _s, _m in st.list(""))
    assert keys == ["a/b.bin", "c/up.bin"]
    assert [k for k, _s, _m in st.list("a")] == ["a/b.bin"]
    assert st.list("nothing-here") == []
    big = pseudo_random(3_000_000, 2)  # several download blocks
    src.write_bytes(big)
    st.upload("c/big.bin", str(src))
    st.download("c/big.bin", str(tmp_path / "big.bin"))
    assert (tmp_path / "big.bin").read_bytes() == big
    assert st.read_range("c/big.bin", 1_000_000, 2_500_001) == big[1_000_000:2_500_001]
    st.delete("c/big.bin")
    st.delete("a/b.bin")
    st.delete("a/b.bin")  # deleting twice is fine
    assert not st.exists("a/b.bin")


def test_s3_pack_bytes_bypass_the_event_loop_only_with_known_options(s3_server) -> None:  # type: ignore[no-untyped-def]
    """S3 pack transfers use a thread-per-request botocore client configured like
    s3fs's (DVX's timeouts, one attempt); options only s3fs knows keep them on s3fs."""
    from tests import servers

    opts = servers.options_for(s3_server)
    direct = RemoteStorage(parse_url("t", "s3://b/p"), dict(opts, read_timeout="7"))
    client = direct._s3
    assert client is not None and direct._s3 is client
    assert client.meta.config.read_timeout == 7.0 and client.meta.config.retries["total_max_attempts"] == 1
    other = RemoteStorage(parse_url("t", "s3://b/p"), dict(opts, requester_pays="true"))
    assert other._s3 is None
    assert RemoteStorage(parse_url("t", "/tmp/x"), {})._s3 is None


def test_push_pull_round_trip(remote_url, repo_dir: Path, cli: Cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write(repo_dir / "data" / "small.txt", "hello")
    write(repo_dir / "data" / "sub" / "big.bin", pseudo_random(3_000_000, 2))
    write(repo_dir / "model.pt", pseudo_random(700_000, 3))
    cli("add", "data", "model.pt")
    add_remote(cli, remote_url)
    cli("commit", "-m", "v1")
    first = json.loads(cli("push", "--json").output)
    assert first["roots"] == 2 and first["packs_uploaded"] >= 1
    again = json.loads(cli("push", "--json").output)
    assert again["roots_already_there"] == 2 and again["bytes_uploaded"] == 0
    assert again["requests"] == 1  # this machine knows it pushed these versions: one read of
    # the remote's marker confirms it is still the remote it pushed them to
    verified = json.loads(cli("push", "--verify", "--json").output)
    assert verified["roots_already_there"] == 2 and verified["requests"] <= 3  # marker + a HEAD each
    assert json.loads(cli("fsck", "--remote", "origin", "--download", "--json").output)["ok"]
    # a teammate: git clone + dvx pull (remote options are local: give them again)
    clone = tmp_path / "clone"
    git("clone", "-q", str(repo_dir), str(clone), cwd=tmp_path)
    os.chdir(clone)
    add_remote(cli, remote_url, "origin2")
    rep = json.loads(cli("pull", "-r", "origin2", "--json").output)
    assert sorted(rep["checkout"]) == ["data", "model.pt"]
    assert (clone / "data" / "sub" / "big.bin").read_bytes() == pseudo_random(3_000_000, 2)
    assert (clone / "model.pt").read_bytes() == pseudo_random(700_000, 3)
    assert json.loads(cli("status", "--json").output)["clean"]
    cli("fsck")


def test_verify_repushes_after_the_remote_was_wiped(remote_url, repo_dir: Path, cli: Cli) -> None:  # type: ignore[no-untyped-def]
    write(repo_dir / "d.bin", pseudo_random(100_000, 8))
    cli("add", "d.bin")
    add_remote(cli, remote_url)
    cli("push")
    st = storage(remote_url)
    for key, _s, _m in st.list(""):
        st.delete(key)  # wiped behind DVX's back
    rep = json.loads(cli("push", "--json").output)  # the marker is gone: nothing is trusted
    assert rep["bytes_uploaded"] > 100_000
    for key, _s, _m in st.list(""):
        if not key.endswith("dvx-remote.json"):
            st.delete(key)  # wiped all but the marker: only --verify can tell
    assert json.loads(cli("push", "--json").output)["bytes_uploaded"] == 0
    rep = json.loads(cli("push", "--verify", "--json").output)
    assert rep["bytes_uploaded"] > 100_000
    assert json.loads(cli("fsck", "--remote", "origin", "--download", "--json").output)["ok"]


def test_only_missing_chunks_move(remote_url, repo_dir: Path, cli: Cli) -> None:  # type: ignore[no-untyped-def]
    big = write(repo_dir / "model.bin", pseudo_random(6_000_000, 4))
    cli("add", "model.bin")
    add_remote(cli, remote_url)
    cli("push")
    with open(big, "r+b") as f:
        f.seek(3_000_000)
        f.write(b"tiny edit")
    cli("add", "model.bin")
    rep = json.loads(cli("push", "--json").output)
    assert 0 < rep["bytes_uploaded"] < 600_000  # a chunk or two, not 6 MB


def test_fetch_rev_and_all_commits(remote_url, repo_dir: Path, cli: Cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write(repo_dir / "d.txt", "v1")
    cli("add", "d.txt")
    add_remote(cli, remote_url)
    cli("commit", "-m", "v1")
    write(repo_dir / "d.txt", "v2")
    cli("commit", "-m", "v2")
    cli("push", "--all-commits")
    shutil.rmtree(repo_dir / ".dvx" / "store")
    rep = json.loads(cli("fetch", "--rev", "HEAD~1", "--json").output)
    assert rep["roots"] == 1 and rep["roots_already_local"] == 0
    cli("checkout", "--rev", "HEAD~1", "--force")
    assert (repo_dir / "d.txt").read_text() == "v1"
    cli("pull", "--force")
    assert (repo_dir / "d.txt").read_text() == "v2"


def test_missing_version_on_remote_is_a_clean_error(remote_url, repo_dir: Path, cli: Cli) -> None:  # type: ignore[no-untyped-def]
    write(repo_dir / "d.txt", "never pushed")
    cli("add", "d.txt")
    add_remote(cli, remote_url)
    cli("push")
    write(repo_dir / "d.txt", "also never pushed")
    cli("add", "d.txt")
    shutil.rmtree(repo_dir / ".dvx" / "store")
    res = cli("pull", ok=False)
    assert "does not have the data of d.txt" in res.output and "dvx push" in res.output


def test_remote_gc_removes_only_unreferenced(remote_url, repo_dir: Path, cli: Cli) -> None:  # type: ignore[no-untyped-def]
    write(repo_dir / "d.bin", pseudo_random(200_000, 7))
    cli("add", "d.bin")
    add_remote(cli, remote_url)
    cli("push")
    st = storage(remote_url)
    # an orphan pack + index, as an interrupted push would leave
    st.write("packs/ab/" + "ab" * 32 + ".pack", b"partial")
    rep = json.loads(cli("gc", "--remote", "origin", "--json").output)
    assert rep["packs_deleted"] == [] and rep["packs_kept_young"] == 1  # grace period
    rep = json.loads(cli("gc", "--remote", "origin", "--grace", "0", "--json").output)
    assert rep["packs_deleted"] == ["ab" * 32] and rep["packs_live"] == 1
    assert json.loads(cli("fsck", "--remote", "origin", "--json").output)["ok"]
