"""Range-read benchmark: 1 MiB at offset 5 GiB of a 10 GiB file at an OLD revision,
read through moto S3 with an empty local store (issue #12, item 6, the S3 part).

    .venv/bin/python bench/bench_range.py [--quick] [--size-gib 10]

Data: random (BLAKE3 XOF, incompressible, no repeated blocks). Version 1 is committed,
then 1 MiB at offset 1 GiB is overwritten and version 2 committed; both are pushed to a
moto S3 server (directly), the local store is emptied, and version 1 is read through a
counting proxy in front of the same server:

* ``dvx``: ``open_remote`` + ``read_manifest_range`` of the old version (the manifest's
  head, the chunk lists covering the range, the chunks);
  cold (no cached remote indexes either: one LIST and every pack index is fetched),
  then with this machine's cached indexes (as after a push or a fetch), then again
  (chunk cache: expected 0 requests).
* ``dvx_open``: the same range through ``dvx.open(path, rev=old, remote=...)``, the
  chunk cache emptied first (the remote's indexes stay cached).
* ``whole_object``: what DVC does for a read from a remote (``dvc.api.open``): GET of
  the whole file object (the same bytes DVC stores under its cache key), then the
  slice. moto assembles a multipart upload in memory and was killed storing one
  10 GiB object on this 24 GiB machine, so the raw file is stored as 512 MiB objects
  and this GETs all of them: the same bytes, in 20 requests instead of one.
* ``raw_ranged_get``: the floor: one boto3 ranged GET of the raw bytes (in the part
  that holds the range).

The proxy counts HTTP requests and bytes; "data requests" are GETs of pack keys (or of
the raw object). Results: bench/results/range.json (range-quick.json with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import DVX, ENV, WORK, CountingProxy, fresh_repo, random_file, run, save, version_of

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

MiB = 1 << 20
GiB = 1 << 30
PART = 256 * MiB  # the raw file is stored as objects of this size (see main)
LINE = re.compile(rb"(GET|PUT|POST|HEAD|DELETE|PATCH) (/[^ \r\n]*) HTTP/1\.[01]\r\n")


class LoggingProxy(CountingProxy):
    """The counting proxy, also keeping each request's method and path."""

    def __init__(self, target_port: int) -> None:
        self.lines: list[tuple[str, str]] = []
        super().__init__(target_port)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.lines = []

    def _pipe(self, src, dst, up: bool) -> None:  # type: ignore[no-untyped-def]
        import contextlib
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
                        old = len(LINE.findall(tail))
                        found = LINE.findall(scan)
                        self.requests += len(found) - old
                        self.lines.extend((m.decode(), p.decode()) for m, p in found[old:])
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

    def summary(self) -> dict[str, object]:
        with self._lock:
            lines = list(self.lines)
            down = self.bytes_down
        data = [p for m, p in lines if m == "GET" and ("/packs/" in p or "/raw/" in p)]
        return {"requests": len(lines), "data_requests": len(data),
                "index_requests": sum(1 for m, p in lines if "/index/" in p),
                "list_requests": sum(1 for m, p in lines if m == "GET" and "list-type" in p),
                "bytes_down_wire": down}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=ENV, check=True, capture_output=True,
                          text=True).stdout


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="256 MiB file, range at its middle")
    ap.add_argument("--size-gib", type=float, default=10.0)
    args = ap.parse_args()
    size = 256 * MiB if args.quick else int(args.size_gib * GiB)
    offset = size // 2 if args.quick else 5 * GiB
    change_at = size // 4 if args.quick else 1 * GiB
    length = MiB
    free = shutil.disk_usage(WORK.parent).free
    if free < 4.5 * size:
        sys.exit(f"needs ~{4.5 * size / GiB:.0f} GiB of free disk (file, store, moto's copies); "
                 f"has {free / GiB:.0f}")

    from tests.servers import free_port, wait_port

    env = dict(ENV, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_EC2_METADATA_DISABLED="true", DVX_CACHE_DIR=str(WORK / "range-usercache"))
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                           "AWS_EC2_METADATA_DISABLED", "DVX_CACHE_DIR")})
    shutil.rmtree(env["DVX_CACHE_DIR"], ignore_errors=True)
    moto = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    port = free_port()
    tmpdir = WORK / "range-moto-tmp"  # moto spools objects here (same disk, not /tmp's RAM)
    shutil.rmtree(tmpdir, ignore_errors=True)
    tmpdir.mkdir(parents=True)
    server = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=dict(env, TMPDIR=str(tmpdir)))
    res: dict[str, object] = {"versions": {"dvx": version_of(DVX + ["--version"]),
                                           "moto": version_of([moto, "--version"])},
                              "file_size": size, "offset": offset, "length": length,
                              "data": "random (BLAKE3 XOF), no repeated blocks"}
    try:
        wait_port(port, server)
        proxy = LoggingProxy(port)
        direct, counted = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{proxy.port}"
        import boto3

        s3 = boto3.client("s3", endpoint_url=direct, region_name="us-east-1")
        s3c = boto3.client("s3", endpoint_url=counted, region_name="us-east-1")
        s3.create_bucket(Bucket="bench")

        repo = fresh_repo(WORK / "range-repo")
        big = repo / "big.bin"
        t = time.perf_counter()
        random_file(big, size, 12)
        res["generate_seconds"] = time.perf_counter() - t
        run(DVX + ["init"], repo)
        for name, url in (("direct", direct), ("counted", counted)):
            run(DVX + ["remote", "add", "--local", name, "s3://bench/dvx", "-o", f"endpoint_url={url}",
                       "-o", "key=testing", "-o", "secret=testing"], repo)
        t = time.perf_counter()
        run(DVX + ["add", "big.bin"], repo)
        run(DVX + ["commit", "-m", "v1"], repo)
        res["add_v1_seconds"] = time.perf_counter() - t
        old_rev = git(repo, "rev-parse", "HEAD").strip()
        overwrite(big, change_at, os.urandom(MiB))
        run(DVX + ["add", "big.bin"], repo)
        run(DVX + ["commit", "-m", "v2"], repo)
        t = time.perf_counter()
        run(DVX + ["push", "-r", "direct", "--all-commits"], repo)
        _guard_memory(server.pid)
        res["push_seconds"] = time.perf_counter() - t
        # the raw old version as one object, for the peers' approaches
        big.unlink()
        shutil.rmtree(repo / ".dvx" / "store" / "packs")
        (repo / ".dvx" / "store" / "packs").mkdir()
        random_file(big, size, 12)
        expected = _slice(big, offset, length)
        # moto assembles a multipart upload in memory (a 10 GiB object killed it on this
        # 24 GiB machine), so the raw file is stored as objects of PART bytes each
        t = time.perf_counter()
        with open(big, "rb") as f:
            for i in range(0, size, PART):
                s3.put_object(Bucket="bench", Key=f"raw/big.bin.{i // PART:04d}", Body=f.read(PART))
                _guard_memory(server.pid)
        res["raw_upload_seconds"] = time.perf_counter() - t
        big.unlink()
        print(f"set up: {json.dumps(res)}", flush=True)

        from dvx.remote.reader import open_remote
        from dvx.repo import Repository

        mid = _manifest_id(repo, old_rev)  # the OLD version's manifest

        def dvx_read(label: str, reset_state: bool) -> None:
            if reset_state:
                shutil.rmtree(repo / ".dvx" / "state" / "remotes", ignore_errors=True)
            proxy.reset()
            t = time.perf_counter()
            reader = open_remote(Repository(str(repo)), "counted")
            got = reader.read_manifest_range(mid, offset, offset + length)
            wall = time.perf_counter() - t
            assert got == expected, "wrong bytes"
            out = {"seconds": wall, "pack_bytes": reader.bytes_fetched,
                   "pack_range_requests": reader.range_requests, **proxy.summary()}
            res[label] = out
            print(label, json.dumps(out), flush=True)

        assert not any((repo / ".dvx" / "store" / "packs").iterdir()), "the local store is not empty"
        dvx_read("dvx_cold", True)
        shutil.rmtree(env["DVX_CACHE_DIR"])  # again, with this machine's cached indexes
        dvx_read("dvx_cached_indexes", False)
        dvx_read("dvx_again", False)

        # the same read through the public API (what a user writes), chunk cache emptied
        import dvx

        shutil.rmtree(env["DVX_CACHE_DIR"], ignore_errors=True)
        proxy.reset()
        t = time.perf_counter()
        with dvx.open("big.bin", rev=old_rev, repo=str(repo), remote="counted") as f:
            f.seek(offset)
            got = f.read(length)
        wall = time.perf_counter() - t
        assert got == expected, "wrong bytes through dvx.open"
        res["dvx_open"] = {"seconds": wall, **proxy.summary()}
        print("dvx_open", json.dumps(res["dvx_open"]), flush=True)

        proxy.reset()
        t = time.perf_counter()
        total = 0
        piece = b""
        for i in range(0, size, PART):
            body = s3c.get_object(Bucket="bench", Key=f"raw/big.bin.{i // PART:04d}")["Body"]
            while True:
                block = body.read(16 * MiB)
                if not block:
                    break
                if total + len(block) > offset and len(piece) < length:
                    piece += block[max(0, offset - total):][:length - len(piece)]
                total += len(block)
        wall = time.perf_counter() - t
        assert piece == expected and total == size
        res["whole_object"] = {"seconds": wall, "object_bytes": total, **proxy.summary()}
        print("whole_object", json.dumps(res["whole_object"]), flush=True)

        proxy.reset()
        t = time.perf_counter()
        part, at = divmod(offset, PART)  # the range lies inside one part
        got = s3c.get_object(Bucket="bench", Key=f"raw/big.bin.{part:04d}",
                             Range=f"bytes={at}-{at + length - 1}")["Body"].read()
        wall = time.perf_counter() - t
        assert got == expected
        res["raw_ranged_get"] = {"seconds": wall, "object_bytes": len(got), **proxy.summary()}
        print("raw_ranged_get", json.dumps(res["raw_ranged_get"]), flush=True)
        cold, again = res["dvx_cold"], res["dvx_again"]
        assert isinstance(cold, dict) and isinstance(again, dict)
        through_open = res["dvx_open"]
        assert isinstance(through_open, dict)
        res["bars"] = {"pack_bytes_le_1_6_MiB": cold["pack_bytes"] <= 1.6 * MiB,
                       "data_requests_le_4": cold["data_requests"] <= 4,
                       "dvx_open_data_requests_le_4": through_open["data_requests"] <= 4,
                       "zero_requests_again": again["requests"] == 0}
        res["ratios"] = {
            "whole_object_bytes_over_dvx_pack_bytes": size / max(1, int(cold["pack_bytes"])),
            "dvx_pack_bytes_over_raw_range": int(cold["pack_bytes"]) / length}
        print("bars", json.dumps(res["bars"]), flush=True)
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(tmpdir, ignore_errors=True)
        shutil.rmtree(WORK / "range-repo", ignore_errors=True)
        shutil.rmtree(env["DVX_CACHE_DIR"], ignore_errors=True)
    save("range-quick" if args.quick else "range", res)


def _guard_memory(pid: int, limit: int = 8 * GiB) -> None:
    """Stop before moto takes the machine's memory (others share it)."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    if rss > limit:
        raise SystemExit(f"moto uses {rss / GiB:.1f} GiB of memory; stopping")


def _slice(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def _manifest_id(repo: Path, rev: str) -> bytes:
    from dvx.pointer import parse_pointer

    text = git(repo, "show", f"{rev}:big.bin.dvx")
    return parse_pointer(text.encode(), "big.bin.dvx").oid


if __name__ == "__main__":
    main()
