"""Remote failure modes against real servers: dropped connections, dead endpoints,
missing buckets, bad credentials, concurrent pushers, corrupted packs, secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import servers
from tests.conftest import Cli, git, pseudo_random, write
from tests.test_remote_conformance import add_remote


def s3_remote(s3_server, port: int | None = None):  # type: ignore[no-untyped-def]
    servers._n = getattr(servers, "_n", 0) + 1
    bucket = f"faults-{os.getpid()}-{servers._n}"
    servers.make_bucket(s3_server, bucket)
    return f"s3://{bucket}/p", servers.options_for(s3_server, port)


def error_and_hint(output: str) -> str:
    """The one ``error:`` line and the ``hint:`` line after it, if any, as one text
    (``note:`` lines, e.g. retry notices, may come before them)."""
    lines = [x for x in output.strip().splitlines() if x.strip() and not x.startswith("note:")]
    assert lines and lines[0].startswith("error:") and "Traceback" not in output, output
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), output
    return "\n".join(lines)


def test_connection_cut_mid_transfer_then_rerun_completes(s3_server, repo_dir: Path, cli: Cli,
                                                          tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proxy = servers.CuttingProxy(s3_server.port)
    try:
        url, opts = s3_remote(s3_server, proxy.port)
        write(repo_dir / "data" / "big.bin", pseudo_random(6_000_000, 1))
        write(repo_dir / "data" / "small.txt", "s")
        cli("add", "data")
        add_remote(cli, (url, opts))
        cli("commit", "-m", "v1")
        proxy.cut_after = 1_000_000
        line = error_and_hint(cli("push", ok=False).output)
        assert "origin" in line and url in line and "re-running" in line
        assert proxy.cuts > 0
        proxy.cut_after = None
        rep = json.loads(cli("push", "--json").output)
        assert rep["roots"] == 1
        assert json.loads(cli("fsck", "--remote", "origin", "--download", "--json").output)["ok"]
        # an interrupted pull leaves no partial file and finishes on a re-run
        clone = tmp_path / "clone"
        git("clone", "-q", str(repo_dir), str(clone), cwd=tmp_path)
        os.chdir(clone)
        add_remote(cli, (url, opts))
        proxy.cut_after = 0
        error_and_hint(cli("pull", ok=False).output)
        assert not (clone / "data").exists()
        assert [n for n in os.listdir(clone / ".dvx" / "store" / "tmp") if not n.startswith(".")] == []
        proxy.cut_after = None
        cli("pull")
        assert (clone / "data" / "big.bin").read_bytes() == pseudo_random(6_000_000, 1)
    finally:
        proxy.close()


def test_dead_endpoint_fails_fast_with_a_clean_error(repo_dir: Path, cli: Cli) -> None:
    port = servers.free_port()  # nothing listens here
    write(repo_dir / "x.txt", "x")
    cli("add", "x.txt")
    add_remote(cli, ("s3://bucket/p", {"endpoint_url": f"http://127.0.0.1:{port}",
                                        "key": "a", "secret": "b"}))
    line = error_and_hint(cli("push", ok=False).output)
    assert "cannot connect" in line and f"127.0.0.1:{port}" in line and "origin" in line


def test_missing_bucket(s3_server, repo_dir: Path, cli: Cli) -> None:  # type: ignore[no-untyped-def]
    write(repo_dir / "x.txt", "x")
    cli("add", "x.txt")
    add_remote(cli, ("s3://no-such-bucket-dvx/p", servers.options_for(s3_server)))
    line = error_and_hint(cli("push", ok=False).output)
    assert "'no-such-bucket-dvx' does not exist" in line


def test_wrong_credentials(az_server, repo_dir: Path, cli: Cli) -> None:  # type: ignore[no-untyped-def]
    servers.make_bucket(az_server, "creds")
    cs = az_server.extra["connection_string"].replace(servers.AZURITE_KEY, "d3Jvbmcga2V5" * 7 + "AA==")
    write(repo_dir / "x.txt", "x")
    cli("add", "x.txt")
    add_remote(cli, ("az://creds/p", {"connection_string": cs}))
    line = error_and_hint(cli("push", ok=False).output)
    assert "credentials were refused" in line or "permission denied" in line


def test_secrets_stay_out_of_committed_config(repo_dir: Path, cli: Cli) -> None:
    res = cli("remote", "add", "s", "s3://b/p", "-o", "secret=hunter2", ok=False)
    assert "looks like a secret" in res.output and "--local" in res.output
    cli("remote", "add", "s", "s3://b/p", "-o", "secret=hunter2", "-o", "endpoint_url=http://x", "--local")
    assert "hunter2" not in (repo_dir / ".dvx" / "config").read_text()
    assert "hunter2" in (repo_dir / ".dvx" / "config.local").read_text()
    assert "config.local" in (repo_dir / ".dvx" / ".gitignore").read_text()
    listed = json.loads(cli("remote", "list", "--json").output)
    assert listed == [{"name": "s", "url": "s3://b/p", "default": False,
                       "options": {"secret": "***", "endpoint_url": "http://x"}}]
    cli("remote", "modify", "s", "--default")
    cli("remote", "remove", "s")
    assert json.loads(cli("remote", "list", "--json").output) == []


def test_missing_backend_package_names_the_extra(repo_dir: Path) -> None:
    code = ("import sys; sys.modules['gcsfs'] = None\n"
            "from dvx.cli import main; main()")
    subprocess.run([sys.executable, "-m", "dvx", "remote", "add", "g", "gs://b/p"], cwd=repo_dir, check=True,
                   capture_output=True)
    write(repo_dir / "x.txt", "x")
    subprocess.run([sys.executable, "-m", "dvx", "add", "x.txt"], cwd=repo_dir, check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-c", code, "push", "-r", "g"], cwd=repo_dir, capture_output=True,
                          text=True)
    assert proc.returncode != 0
    assert 'pip install "dvx[gcs]"' in proc.stderr


def test_four_clones_push_to_one_bucket_at_once(s3_server, repo_dir: Path, cli: Cli,
                                                tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, opts = s3_remote(s3_server)
    write(repo_dir / "README", "shared")
    git("add", "README", ".dvx", cwd=repo_dir)
    git("commit", "-q", "-m", "base", cwd=repo_dir)
    clones = []
    for i in range(4):
        c = tmp_path / f"clone{i}"
        git("clone", "-q", str(repo_dir), str(c), cwd=tmp_path)
        os.chdir(c)
        add_remote(cli, (url, opts))
        write(c / f"data{i}" / "shared.bin", pseudo_random(400_000, 99))  # same bytes everywhere
        write(c / f"data{i}" / "own.bin", pseudo_random(1_500_000 + i, i))
        cli("add", f"data{i}")
        clones.append(c)
    env = dict(os.environ, DVX_NO_PROGRESS="1")
    procs = [subprocess.Popen([sys.executable, "-m", "dvx", "push", "--json"], cwd=c, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in clones]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert json.loads(out)["roots"] == 1
    # everything is retrievable from a fifth machine, and the remote verifies clean
    for i, c in enumerate(clones):
        os.chdir(c)
        (c / f"data{i}" / "own.bin").unlink()
        import shutil
        shutil.rmtree(c / ".dvx" / "store")
        cli("pull")
        assert (c / f"data{i}" / "own.bin").read_bytes() == pseudo_random(1_500_000 + i, i)
    assert json.loads(cli("fsck", "--remote", "origin", "--download", "--json").output)["ok"]


@pytest.mark.parametrize("backend", ["dir", "s3"])
def test_corrupted_pack_detected_on_pull(backend: str, s3_server, repo_dir: Path, cli: Cli,
                                         tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dvx.remote.storage import RemoteStorage, parse_url

    remote = (str(tmp_path / "r"), {}) if backend == "dir" else s3_remote(s3_server)
    content = pseudo_random(2_000_000, 5)
    write(repo_dir / "m.bin", content)
    cli("add", "m.bin")
    add_remote(cli, remote)
    cli("commit", "-m", "v1")
    cli("push")
    st = RemoteStorage(parse_url("r", remote[0]), remote[1])
    (key,) = [k for k, _s, _m in st.list("packs")]
    raw = bytearray(st.read(key))
    raw[len(raw) // 2] ^= 0xFF
    st.write(key, bytes(raw))
    bad = json.loads(cli("fsck", "--remote", "origin", "--download", "--json", ok=False).output)
    assert not bad["ok"] and "corrupted" in bad["problems"][0]["message"]
    clone = tmp_path / "clone"
    git("clone", "-q", str(repo_dir), str(clone), cwd=tmp_path)
    os.chdir(clone)
    add_remote(cli, remote)
    line = error_and_hint(cli("pull", ok=False).output)
    assert "corrupted" in line
    assert not (clone / "m.bin").exists()
    local = json.loads(cli("fsck", "--json", ok=None).output)  # data is missing, as it should be...
    assert all("corrupted" not in p["message"] for p in local["problems"])  # ...but nothing bad is stored
