"""Shared fixtures: real temporary git repositories and an in-process CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from typer.testing import CliRunner

from dvx.cli import app
from dvx.ops.init import init as dvx_init

# The test command (scripts/test.sh, which CI runs) draws the same property-test cases on
# every run, so a submission cannot fail on a case nobody has seen; a plain `pytest`
# explores new random cases (a failure found so is pinned with @example).
settings.register_profile("repeatable", derandomize=True)
if os.environ.get("DVX_REQUIRE_EMULATORS"):
    settings.load_profile("repeatable")

VECTORS = Path(__file__).resolve().parent.parent / "protocols" / "vectors"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "DVX Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "DVX Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("DVX_NO_PROGRESS", "1")
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def repo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh git work tree with ``dvx init`` done; the cwd is set to it."""
    root = tmp_path / "work"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    dvx_init(str(root))
    monkeypatch.chdir(root)
    yield root


class Cli:
    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, ok: bool | None = True, input: str | None = None):  # type: ignore[no-untyped-def]
        result = self.runner.invoke(app, list(args), input=input, catch_exceptions=False)
        if ok is True:
            assert result.exit_code == 0, f"dvx {' '.join(args)} failed: {result.output}"
        elif ok is False:
            assert result.exit_code != 0, f"dvx {' '.join(args)} unexpectedly succeeded"
        return result


@pytest.fixture
def cli() -> Cli:
    return Cli()


def run_dvx(*args: str, cwd: str | os.PathLike[str], check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``dvx`` program in a subprocess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "dvx", *args], cwd=cwd, text=True,
                          capture_output=True, env=full_env)
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def git(*args: str, cwd: str | os.PathLike[str]) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, text=True,
                          capture_output=True).stdout


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def pseudo_random(n: int, seed: int = 0) -> bytes:
    from blake3 import blake3

    return blake3(seed.to_bytes(8, "little")).digest(length=n)


# -- real storage servers (see tests/servers.py) ----------------------------------------

def _server(kind: str):  # type: ignore[no-untyped-def]
    from tests import servers

    starters = {"s3": servers.start_moto, "gcs": servers.start_fake_gcs, "az": servers.start_azurite}
    try:
        return starters[kind]()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("DVX_REQUIRE_EMULATORS"):
            raise
        pytest.skip(f"{kind} emulator not available: {exc}")


@pytest.fixture(scope="session")
def s3_server():  # type: ignore[no-untyped-def]
    srv = _server("s3")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def gcs_server():  # type: ignore[no-untyped-def]
    srv = _server("gcs")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def az_server():  # type: ignore[no-untyped-def]
    srv = _server("az")
    yield srv
    srv.stop()


_bucket_counter = [0]


@pytest.fixture(params=["dir", "s3", "s3-via-s3fs", "gcs", "az"])
def remote_url(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """(url, options) of an empty remote on every backend, each on a real server.
    ``s3-via-s3fs``: S3 through s3fs, the path of remotes with options DVX's direct
    S3 client does not know (``RemoteStorage._s3``)."""
    from tests import servers

    if request.param == "dir":
        return str(tmp_path / "remote-dir"), {}
    kind = request.param
    if kind == "s3-via-s3fs":
        request.getfixturevalue("monkeypatch").setenv("DVX_S3_DIRECT", "0")
        kind = "s3"
    srv = request.getfixturevalue(f"{kind}_server")
    _bucket_counter[0] += 1
    bucket = f"dvx-test-{os.getpid()}-{_bucket_counter[0]}"
    servers.make_bucket(srv, bucket)
    scheme = {"s3": "s3", "gcs": "gs", "az": "az"}[kind]
    return f"{scheme}://{bucket}/team/proj", servers.options_for(srv)
