"""Helpers shared by the benchmarks: data generation, timing, peer environments.

Peers (DVC, pyfastcdc, ...) live in their own virtual environment, bench/.venv-peers,
created on first use; they are never DVX dependencies.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from blake3 import blake3

BENCH = Path(__file__).resolve().parent
TOP = BENCH.parent
WORK = BENCH / ".work"
PEERS = BENCH / ".venv-peers"
DVX = [sys.executable, "-m", "dvx"]
ENV = dict(os.environ, DVX_NO_PROGRESS="1", GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@x",
           GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="b@x", DVC_NO_ANALYTICS="1")

# Every tool runs from compiled bytecode, as after a regular pip install: the peers'
# environment was compiled by pip, and dvx/ (an editable install) is compiled here, so
# an environment with PYTHONDONTWRITEBYTECODE does not make DVX recompile on each run.
subprocess.run([sys.executable, "-m", "compileall", "-q", str(TOP / "dvx")], check=True,
               stdout=subprocess.DEVNULL)


def ensure_peers(*packages: str) -> Path:
    """Create bench/.venv-peers with the given PyPI packages; returns its bin dir."""
    py = PEERS / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
    missing = [p for p in packages
               if subprocess.run([str(py), "-m", "pip", "show", "-q", p.split("==")[0]],
                                 capture_output=True).returncode != 0]
    if missing:
        print(f"installing peers into {PEERS}: {' '.join(missing)}", flush=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *missing], check=True)
    return PEERS / "bin"


def ensure_b3sum() -> str | None:
    found = shutil.which("b3sum")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "b3sum"], capture_output=True)
        if subprocess.run(["apt-get", "install", "-y", "-q", "b3sum"],
                          capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "b3sum"], capture_output=True)
    return shutil.which("b3sum")


def version_of(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def run(cmd: list[str], cwd: Path, check: bool = True) -> tuple[float, int, str]:
    """Run a command; returns (wall seconds, peak RSS of the child in KiB, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], cwd=cwd, env=ENV,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t
    del before
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    rss = int(proc.stderr.strip().splitlines()[-1]) if proc.stderr.strip() else 0
    return wall, rss, proc.stdout


def best_of(n: int, cmd: list[str], cwd: Path) -> float:
    return min(run(cmd, cwd)[0] for _ in range(n))


def random_file(path: Path, size: int, seed: int) -> None:
    """Incompressible deterministic data (BLAKE3 XOF), written in 64 MiB pieces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h = blake3(seed.to_bytes(8, "little"))
    with open(path, "wb") as f:
        pos = 0
        while pos < size:
            n = min(64 << 20, size - pos)
            f.write(h.digest(length=n, seek=pos))
            pos += n


def small_files(root: Path, count: int, seed: int) -> None:
    h = blake3(seed.to_bytes(8, "little"))
    sizes = h.digest(length=count * 2)
    pos = 0
    for i in range(count):
        n = 1024 + int.from_bytes(sizes[2 * i:2 * i + 2], "little") % 7169  # 1..8 KiB
        d = root / f"part{i // 1000:03d}"
        if i % 1000 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:06d}.bin").write_bytes(h.digest(length=n, seek=1_000_000 + pos))
        pos += n


def insert(path: Path, offset: int, data: bytes) -> None:
    """Insert bytes into a file at an offset (rewrites the file)."""
    tmp = path.with_suffix(".tmp")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        dst.write(src.read(offset))
        dst.write(data)
        shutil.copyfileobj(src, dst, 16 << 20)
    os.replace(tmp, path)


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def fresh_repo(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def save(name: str, data: dict) -> None:
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")


class CountingProxy:
    """TCP proxy in front of a storage server that counts HTTP requests and bytes, so
    DVX and its peers are measured by the same yardstick."""

    import re as _re

    REQUEST = _re.compile(rb"(?:GET|PUT|POST|HEAD|DELETE|PATCH) /[^ \r\n]* HTTP/1\.[01]\r\n")

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self.target = target_port
        self.requests = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.requests = self.bytes_up = self.bytes_down = 0

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src, dst, up: bool) -> None:  # type: ignore[no-untyped-def]
        import socket

        tail = b""
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                with self._lock:
                    if up:
                        self.bytes_up += len(data)
                        scan = tail + data
                        self.requests += len(self.REQUEST.findall(scan)) - len(self.REQUEST.findall(tail))
                        tail = scan[-64:]
                    else:
                        self.bytes_down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
