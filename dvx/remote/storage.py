"""Remote storage backends: one small interface over fsspec (``protocols/remote.md``).

Interface contract (every backend, checked by ``tests/test_remote_conformance.py``):

* keys are ``/``-separated paths relative to the remote root;
* ``write``/``upload`` are atomic: a reader sees the whole object or nothing;
* ``read``/``read_range``/``size`` raise ``KeyNotFound`` for a missing key, and
  nothing else does; every other failure is a ``RemoteError`` naming the remote, its
  URL and what to check;
* every call may be retried by the caller (all writes are of immutable, content-named
  keys). Each attempt waits at most ``connect_timeout`` to connect and ``read_timeout``
  for any byte of an answer (every cloud backend); calls are retried here, within a
  bounded budget (``retries`` more attempts after a transient failure: no answer,
  dropped connection, 5xx, throttling), each announced through ``on_retry``. The
  SDKs' own retry schedules (botocore, gcsfs, the Azure SDK) are set to one attempt,
  so a server that never answers is given up after about
  ``(retries + 1) * read_timeout`` seconds (~30 s by default). These three are DVX
  options of the remote (``-o read_timeout=10``), never passed to fsspec.

Backends: a directory (``/path``, ``file://``), ``s3://`` (s3fs), ``gs://`` (gcsfs),
``az://``/``abfs://`` (adlfs). Backend packages are imported lazily; a missing one is a
clear "pip install dvx[s3]" message.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

from dvx.errors import RemoteError
from dvx.fsutil import random_token

SCHEMES = {"": "file", "file": "file", "s3": "s3", "gs": "gcs", "gcs": "gcs", "az": "az",
           "abfs": "az", "azure": "az"}
EXTRAS = {"s3": ("s3fs", "s3"), "gcs": ("gcsfs", "gcs"), "az": ("adlfs", "azure")}
SECRET_WORDS = ("secret", "password", "token", "connection_string", "account_key", "sas",
                "credential", "key")
# DVX's own per-remote options (not fsspec's): how long one attempt may wait with no
# progress, and how many more attempts a transient failure gets. The defaults give up
# on a silent server after about 3 x 10 s.
TIMEOUT_OPTIONS = {"connect_timeout": 5.0, "read_timeout": 10.0, "retries": 2.0}
TEMP_PREFIX = ".tmp-"  # directory remotes: uploads in progress (temp file + rename)
# S3 options the direct (botocore, thread-per-request) path understands; a remote with
# any other option moves its pack bytes through s3fs as well (see RemoteStorage._s3)
S3_DIRECT_OPTIONS = frozenset({"endpoint_url", "key", "secret", "token", "profile", "anon",
                               "skip_instance_cache"})
DOWNLOAD_BLOCK = 1 << 20
T = TypeVar("T")


class KeyNotFound(Exception):
    pass


class TransientRemoteError(RemoteError):
    """A failure another attempt may not see: no answer, dropped connection, 5xx..."""

    def __init__(self, message: str, hint: str | None = None, *, timeout: bool = False) -> None:
        super().__init__(message, hint)
        self.timeout = timeout


def timeout_settings(name: str, options: dict[str, str]) -> tuple[float, float, int]:
    """``(connect_timeout, read_timeout, retries)`` of a remote's options, validated."""
    out = []
    for key, default in TIMEOUT_OPTIONS.items():
        raw = options.get(key)
        try:
            value = default if raw is None else float(raw)
        except ValueError:
            value = -1.0
        if value < 0 or (key != "retries" and value == 0) or (key == "retries" and value != int(value)):
            raise RemoteError(f"remote {name!r}: option {key}={raw!r} is not valid",
                              f"give {'a whole number' if key == 'retries' else 'a number of seconds'}, "
                              f"e.g. `dvx remote modify {name} -o {key}={default:g}`")
        out.append(value)
    return out[0], out[1], int(out[2])


def looks_secret(option: str) -> bool:
    low = option.lower()
    if low in ("endpoint_url", "profile", "region", "project", "account_name", "anon"):
        return False
    return any(w in low for w in SECRET_WORDS)


@dataclass(frozen=True)
class RemoteSpec:
    name: str
    url: str
    protocol: str  # file | s3 | gcs | az
    root: str  # path inside the filesystem (bucket/prefix or absolute directory)


def parse_url(name: str, url: str, base_dir: str | None = None) -> RemoteSpec:
    parsed = urlparse(url)
    scheme = parsed.scheme.lower() if len(parsed.scheme) > 1 else ""  # C:\\ is not a scheme
    if scheme not in SCHEMES:
        raise RemoteError(f"remote {name!r} has an unsupported URL {url!r}",
                          "use a directory, file://, s3://, gs://, az:// or abfs://")
    protocol = SCHEMES[scheme]
    if protocol == "file":
        path = parsed.path if scheme == "file" else url
        if not os.path.isabs(path):
            path = os.path.abspath(os.path.join(base_dir or os.getcwd(), path))
        return RemoteSpec(name, url, "file", os.path.normpath(path))
    bucket = parsed.netloc
    if not bucket:
        raise RemoteError(f"remote {name!r}: URL {url!r} names no bucket or container",
                          f"write it as {scheme}://BUCKET/PREFIX")
    root = bucket + "/" + parsed.path.strip("/") if parsed.path.strip("/") else bucket
    return RemoteSpec(name, url, protocol, root)


class RemoteStorage:
    """A remote's keys, through one fsspec filesystem."""

    def __init__(self, spec: RemoteSpec, options: dict[str, str]) -> None:
        self.spec = spec
        self.options = {k: v for k, v in options.items() if k not in TIMEOUT_OPTIONS}
        self.connect_timeout, self.read_timeout, self.retries = timeout_settings(spec.name, options)
        self.on_retry: Callable[[str], None] | None = None  # told about each retry (progress)
        self._fs: Any = None
        self._sdk_retries = False  # the backend's SDK still retries on its own (see _make_fs)
        self._s3_client: Any = None
        self._s3_tried = False
        self._s3_lock = threading.Lock()
        _STORAGES.add(self)

    def _after_fork(self) -> None:
        """In a forked child: the parent's HTTP connections, s3fs event loop and locks
        are not this process's; clients are made afresh on next use."""
        self._s3_lock = threading.Lock()
        self._fs = None
        self._s3_client = None
        self._s3_tried = False

    # -- setup --------------------------------------------------------------------
    @property
    def where(self) -> str:
        return f"remote {self.spec.name!r} ({self.spec.url})"

    def _error(self, what: str, hint: str) -> RemoteError:
        return RemoteError(f"{self.where}: {what}", hint)

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = self._make_fs()
        return self._fs

    def _make_fs(self) -> Any:
        proto = self.spec.protocol
        opts: dict[str, Any] = dict(self.options)
        if proto == "file":
            from fsspec.implementations.local import LocalFileSystem

            return LocalFileSystem(auto_mkdir=True)
        module, extra = EXTRAS[proto]
        if proto == "gcs":
            # gcsfs stalls ~60 s per call against emulators without this (set before import)
            os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        try:
            __import__(module)
        except ImportError:
            raise RemoteError(f"{self.where} needs the {module} package",
                              f'install it with pip install "dvx[{extra}]"') from None
        self._preflight()
        import fsspec

        opts.setdefault("skip_instance_cache", True)
        if proto == "s3":
            os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
            # SigV4 payload signing hashes every body with SHA-256 in Python-called code;
            # the CRC32 request checksum (kept) already lets S3 reject a damaged upload,
            # and every object is BLAKE3-verified when read back.
            # One retry layer only (``_call``): botocore and s3fs retrying on their own
            # multiplied into ~10 minutes of silence against a server that never answers.
            opts.setdefault("config_kwargs", {"connect_timeout": self.connect_timeout,
                                              "read_timeout": self.read_timeout,
                                              "retries": {"total_max_attempts": 1, "mode": "standard"},
                                              "s3": {"payload_signing_enabled": False}})
            if "anon" in opts:
                opts["anon"] = str(opts["anon"]).lower() in ("1", "true", "yes")
        elif proto == "gcs":
            import logging

            import aiohttp

            # gcsfs logs every retry it gives up with a traceback; DVX reports the error
            logging.getLogger("gcsfs").addHandler(logging.NullHandler())

            # per attempt: time to connect, then to each read; gcsfs retries on its own
            opts.setdefault("requests_timeout", aiohttp.ClientTimeout(
                sock_connect=self.connect_timeout, sock_read=self.read_timeout))
        elif proto == "az":
            opts.setdefault("connection_timeout", self.connect_timeout)
            opts.setdefault("read_timeout", self.read_timeout)
        try:
            fs = fsspec.filesystem(proto, **opts)
        except Exception as exc:
            raise self._error(f"cannot be opened: {_short(exc)}",
                              "check the -o options with `dvx remote list`") from None
        # One retry layer only (``_call``), for every backend: the SDKs' own schedules
        # (gcsfs: 6 attempts and ~30 s of back-off; Azure: 4 attempts and ~80 s) on top
        # of DVX's took 1.5-2 minutes to give up on a server that never answers.
        if proto == "s3":
            fs.retries = 1
            self._sdk_retries = False
        elif proto == "gcs":
            self._sdk_retries = not _gcs_single_attempt(fs)
        elif proto == "az":
            self._sdk_retries = not _azure_single_attempt(fs, self.connect_timeout, self.read_timeout)
        return fs

    @property
    def _s3(self) -> Any:
        """S3 only: a botocore client (synchronous, thread-safe) that makes every
        request in the calling thread, or None (another backend, options only s3fs
        knows, or ``DVX_S3_DIRECT=0``): then s3fs does.

        s3fs runs every request of the process on one event-loop thread: eight
        parallel 32 MiB transfers took turns on it (copying each body, checksumming and
        writing 64 KiB pieces), which made push and fetch 2-5x slower than the wire,
        and importing it (aiobotocore, aiohttp) cost ~0.3 s a command. Here each
        transfer thread does its own socket I/O (the GIL is released while it waits).
        Same timeouts and single attempt as s3fs's client (``_call`` retries), same
        CRC32 request checksum on uploads, the same key layout."""
        if self.spec.protocol != "s3":
            return None
        if self._s3_tried:
            return self._s3_client
        with self._s3_lock:
            if not self._s3_tried:
                self._s3_client = self._make_s3_client()
                self._s3_tried = True
        return self._s3_client

    def _make_s3_client(self) -> Any:
        if set(self.options) - S3_DIRECT_OPTIONS or os.environ.get("DVX_S3_DIRECT") == "0":
            return None
        import importlib.util

        try:
            if importlib.util.find_spec("s3fs") is None or importlib.util.find_spec("botocore") is None:
                return None  # s3fs's path names the missing extra
        except ValueError:  # a module set to None in sys.modules
            return None
        os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        self._preflight()
        import botocore.session
        from botocore import UNSIGNED
        from botocore.config import Config
        o = self.options
        anon = str(o.get("anon", "")).lower() in ("1", "true", "yes")
        config = Config(connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
                        retries={"total_max_attempts": 1, "mode": "standard"},
                        max_pool_connections=64, s3={"payload_signing_enabled": False},
                        # every object is BLAKE3-verified when read: no second, CRC32 pass
                        response_checksum_validation="when_required",
                        **({"signature_version": UNSIGNED} if anon else {}))
        try:
            session = botocore.session.Session(profile=o.get("profile") or None)
            return session.create_client(
                "s3", endpoint_url=o.get("endpoint_url") or None, config=config,
                aws_access_key_id=None if anon else o.get("key") or None,
                aws_secret_access_key=None if anon else o.get("secret") or None,
                aws_session_token=None if anon else o.get("token") or None)
        except Exception as exc:
            raise self._error(f"cannot be opened: {_short(exc)}",
                              "check the -o options with `dvx remote list`") from None

    def _s3_key(self, key: str) -> tuple[str, str]:
        bucket, _, path = self._path(key).partition("/")
        return bucket, path

    def _s3_get(self, key: str, **kw: Any) -> Any:
        """The body of a GET (a botocore ``StreamingBody``); ``KeyNotFound`` if absent."""
        bucket, path = self._s3_key(key)
        try:
            return self._s3.get_object(Bucket=bucket, Key=path, **kw)["Body"]
        except Exception as exc:
            if _s3_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise KeyNotFound(key) from None
            raise

    def _s3_head(self, key: str) -> int:
        bucket, path = self._s3_key(key)
        try:
            return int(self._s3.head_object(Bucket=bucket, Key=path)["ContentLength"])
        except Exception as exc:
            if _s3_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise KeyNotFound(key) from None
            raise

    def _s3_find(self, prefix: str) -> list[tuple[str, int, float | None]]:
        """Every object below ``prefix`` (a key or a "directory"), as ``_find``."""
        bucket, base = self._s3_key(prefix)
        base = base.rstrip("/")
        root = self.spec.root.rstrip("/") + "/"
        out = []
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, **({"Prefix": base} if base else {}))
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if base and key != base and not key.startswith(base + "/"):
                    continue  # "index-old/..." is not below "index"
                full = f"{bucket}/{key}"
                if not full.startswith(root):
                    continue
                out.append((full[len(root):], int(obj.get("Size") or 0), _mtime(obj)))
        return out

    def _endpoint(self) -> tuple[str, int] | None:
        url = self.options.get("endpoint_url")
        if url is None and self.spec.protocol == "az":
            cs = self.options.get("connection_string") or os.environ.get("AZURE_STORAGE_CONNECTION_STRING", "")
            for part in cs.split(";"):
                if part.lower().startswith("blobendpoint="):
                    url = part.split("=", 1)[1]
        if url is None and self.spec.protocol == "gcs":
            url = os.environ.get("STORAGE_EMULATOR_HOST")
        if not url:
            return None
        p = urlparse(url if "://" in url else "http://" + url)
        if not p.hostname:
            return None
        return p.hostname, p.port or (443 if p.scheme == "https" else 80)

    def _preflight(self) -> None:
        """Fail in seconds, not minutes, when a custom endpoint is down (SDK retries
        against a dead endpoint take 10-200 s)."""
        ep = self._endpoint()
        if ep is None:
            return
        try:
            with socket.create_connection(ep, timeout=self.connect_timeout):
                pass
        except OSError as exc:
            raise self._error(f"cannot connect to {ep[0]}:{ep[1]} ({exc.strerror or exc})",
                              "check that the endpoint is right and the server is running") from None

    def _path(self, key: str) -> str:
        return f"{self.spec.root}/{key}" if key else self.spec.root

    # -- error mapping and retries -----------------------------------------------------
    def _call(self, action: str, key: str, fn: Callable[[], T]) -> T:
        """Run one storage call; retry transient failures (cloud backends) within the
        remote's budget, announcing each retry; map every failure to one clear error."""
        attempt = 0
        while True:
            try:
                with self._guard(action, key):
                    return fn()
            except TransientRemoteError as exc:
                attempt += 1
                # where the SDK could not be told to make one attempt, it retries on its
                # own schedule: adding attempts on top would multiply them
                budget = 0 if self._sdk_retries else self.retries
                if attempt > budget:
                    if attempt > 1:
                        exc.message += f" (gave up after {attempt} attempts)"
                    raise
                wait = min(0.5 * 2 ** (attempt - 1), 5.0)
                if self.on_retry is not None:
                    self.on_retry(f"{exc.message}; retrying in {wait:g} s "
                                  f"(attempt {attempt + 1} of {self.retries + 1})")
                time.sleep(wait)

    @contextlib.contextmanager
    def _guard(self, action: str, key: str):  # type: ignore[no-untyped-def]
        try:
            yield
        except KeyNotFound:
            raise
        except RemoteError:
            raise
        except FileNotFoundError as exc:
            if _is_missing_bucket(exc):
                raise self._missing_bucket() from None
            raise KeyNotFound(key) from None
        except Exception as exc:
            raise self._map(exc, action, key) from None

    def _missing_bucket(self) -> RemoteError:
        bucket = self.spec.root.split("/")[0]
        return self._error(f"bucket or container {bucket!r} does not exist",
                           "create it, or fix the URL with `dvx remote modify`")

    def _map(self, exc: BaseException, action: str, key: str) -> RemoteError:
        text = _short(exc)
        low = f"{type(exc).__name__} {text}".lower()
        code = _status_code(exc)
        if isinstance(exc, PermissionError) or code == 403 or any(
                w in low for w in ("accessdenied", "access denied", "forbidden", "authorizationfailure")):
            return self._error(f"permission denied to {action} {key}",
                               "check that your credentials may read and write this bucket")
        if code == 401 or any(w in low for w in ("invalidaccesskeyid", "signaturedoesnotmatch",
                                                  "authenticationfailed", "unauthorized",
                                                  "nocredentials", "credentials")):
            return self._error(f"credentials were refused while trying to {action} {key}",
                               "check AWS_*/GOOGLE_*/AZURE_* variables or the -o key/secret options")
        if "nosuchbucket" in low or "containernotfound" in low or "bucket does not exist" in low:
            return self._missing_bucket()
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return self._error(f"no space left to {action} {key}", "free space on the remote")
        if _is_timeout(exc):
            return TransientRemoteError(
                f"{self.where}: no answer within {self.read_timeout:g} s while trying to {action} {key}",
                f"check the endpoint and the network; a slow link may need a longer "
                f"`dvx remote modify {self.spec.name} -o read_timeout=SECONDS` (or -o retries=N)",
                timeout=True)
        if "quota" in low or "slowdown" in low or code == 429:
            return TransientRemoteError(f"{self.where}: quota or rate limit hit while trying to {action} {key}",
                                        "retry later or raise the quota")
        if any(w in low for w in ("connect", "timeout", "timed out", "connection", "reset",
                                  "broken pipe", "serverdisconnected", "payload", "incomplete",
                                  "endpoint", "servicerequesterror", "eof")) or (code or 0) >= 500:
            return TransientRemoteError(
                f"{self.where}: connection failed while trying to {action} {key} ({text})",
                "check the network and endpoint; re-running continues where it stopped")
        return self._error(f"cannot {action} {key}: {text}", "check the remote and retry")

    # -- operations ------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        try:
            self.size(key)
            return True
        except KeyNotFound:
            return False

    def size(self, key: str) -> int:
        if self._s3 is not None:
            return self._call("inspect", key, lambda: self._s3_head(key))

        def call() -> int:
            info = self.fs.info(self._path(key))
            if info.get("type") == "directory":
                raise KeyNotFound(key)
            return int(info["size"])
        return self._call("inspect", key, call)

    def read(self, key: str) -> bytes:
        if self._s3 is not None:
            return self._call("read", key, lambda: bytes(self._s3_get(key).read()))
        return self._call("read", key, lambda: bytes(self.fs.cat_file(self._path(key))))

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``; raises a RemoteError if fewer come back."""
        if self._s3 is not None and end > start:
            data = self._call("read", key,
                              lambda: bytes(self._s3_get(key, Range=f"bytes={start}-{end - 1}").read()))
        else:
            data = self._call("read", key,
                              lambda: bytes(self.fs.cat_file(self._path(key), start=start, end=end)))
        if len(data) != end - start:
            raise self._error(f"short read of {key} ({len(data)} of {end - start} bytes)",
                              "re-run; if it persists run `dvx fsck --remote`")
        return data

    def read_into(self, key: str, view: memoryview) -> None:
        """The whole object into ``view``, which must be exactly its size; raises a
        RemoteError if it is not (the caller verifies the bytes)."""
        if self._s3 is not None:
            self._call("read", key, lambda: self._s3_read_into(key, view))
            return
        data = self.read(key)
        if len(data) != len(view):
            raise self._error(f"{key} is {len(data)} bytes, not the {len(view)} its index says",
                              "run `dvx fsck --remote`")
        view[:] = data

    def _s3_read_into(self, key: str, view: memoryview) -> None:
        body = self._s3_get(key)
        try:
            length = body._content_length
            if length is not None and int(length) != len(view):
                raise self._error(f"{key} is {length} bytes, not the {len(view)} its index says",
                                  "run `dvx fsck --remote`")
            got = 0
            # socket to buffer, no copy in between; a short body raises at its end
            while got < len(view) and (n := body.readinto(view[got:got + DOWNLOAD_BLOCK])):
                got += n
            if got != len(view):
                raise TransientRemoteError(
                    f"{self.where}: connection failed while trying to read {key} "
                    f"(incomplete read: {got} of {len(view)} bytes)",
                    "check the network and endpoint; re-running continues where it stopped")
        finally:
            body.close()

    def download(self, key: str, local_path: str) -> None:
        """Copy a key to a local file (the caller verifies and renames it)."""
        if self._s3 is not None:
            self._call("download", key, lambda: self._s3_download(key, local_path))
        else:
            self._call("download", key, lambda: self.fs.get_file(self._path(key), local_path))

    def _s3_download(self, key: str, local_path: str) -> None:
        body = self._s3_get(key)
        try:
            buf = bytearray(DOWNLOAD_BLOCK)  # one reused buffer: no allocation per block
            view = memoryview(buf)
            with open(local_path, "wb") as f:
                # a short body raises at its end (botocore checks the length it was told)
                while n := body.readinto(buf):
                    f.write(view[:n])
        finally:
            body.close()

    def write(self, key: str, data: bytes) -> None:
        if self.spec.protocol == "file":
            self._call("write", key, lambda: self._local_atomic(key, lambda tmp: _write_file(tmp, data)))
        elif self._s3 is not None:
            bucket, path = self._s3_key(key)
            self._call("write", key, lambda: self._s3.put_object(Bucket=bucket, Key=path, Body=data))
        else:
            self._call("write", key, lambda: self.fs.pipe_file(self._path(key), data))

    def upload(self, key: str, local_path: str) -> None:
        if self.spec.protocol == "file":
            import shutil

            self._call("upload", key,
                       lambda: self._local_atomic(key, lambda tmp: shutil.copyfile(local_path, tmp)))
        else:
            # one PUT takes up to 5 GiB; s3fs splits larger files into parts
            direct = self._s3 is not None and os.path.getsize(local_path) < 5 << 30
            self._call("upload", key, lambda: self._s3_upload(key, local_path)
                       if direct else self.fs.put_file(local_path, self._path(key)))

    def _s3_upload(self, key: str, local_path: str) -> None:
        """One PUT (packs are at most a few tens of MiB), the body read from the file."""
        bucket, path = self._s3_key(key)
        with open(local_path, "rb") as f:
            self._s3.put_object(Bucket=bucket, Key=path, Body=f)

    def _local_atomic(self, key: str, fill) -> None:  # type: ignore[no-untyped-def]
        final = self._path(key)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = os.path.join(os.path.dirname(final), f"{TEMP_PREFIX}{random_token(8)}")
        try:
            fill(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _find(self, prefix: str) -> list[tuple[str, int, float | None]]:
        if self._s3 is not None:
            return self._call("list", prefix, lambda: self._s3_find(prefix))
        base = self._path(prefix).rstrip("/")

        def call() -> dict[str, Any]:
            try:
                return self.fs.find(base, detail=True)  # type: ignore[no-any-return]
            except FileNotFoundError as exc:
                if _is_missing_bucket(exc):
                    raise self._missing_bucket() from None
                return {}
        found = self._call("list", prefix, call)
        out = []
        root = self.spec.root.rstrip("/") + "/"
        for path, info in found.items():
            rel = path[len(root):] if path.startswith(root) else path.split(root, 1)[-1]
            out.append((rel, int(info.get("size") or 0), _mtime(info)))
        return out

    def list_temporary(self) -> list[tuple[str, int, float | None]]:
        """``(key, size, mtime)`` of the temporary files of uploads in progress, or left
        by interrupted ones (directory remotes only; cloud uploads are single atomic
        PUTs and leave nothing behind)."""
        if self.spec.protocol != "file" or not os.path.isdir(self.spec.root):
            return []
        return [x for x in self._find("") if os.path.basename(x[0]).startswith(TEMP_PREFIX)]

    def list(self, prefix: str) -> list[tuple[str, int, float | None]]:
        """``(key, size, mtime)`` of every object below ``prefix`` (recursive)."""
        return [x for x in self._find(prefix) if not os.path.basename(x[0]).startswith(TEMP_PREFIX)]

    def delete(self, key: str) -> None:
        if self._s3 is not None:
            bucket, path = self._s3_key(key)
            self._call("delete", key, lambda: self._s3.delete_object(Bucket=bucket, Key=path))
            return

        def call() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self._path(key))
        self._call("delete", key, call)

    def root_exists(self) -> bool:
        """Whether the directory (directory remotes) exists; cloud remotes: True (a
        missing bucket is reported by the first request)."""
        return self.spec.protocol != "file" or os.path.isdir(self.spec.root)

    def missing_root_error(self) -> RemoteError:
        return self._error(f"directory {self.spec.root} does not exist",
                           "check the path (is the drive mounted?); fix it with "
                           f"`dvx remote modify {self.spec.name} --url PATH`, or pass --create to "
                           "`dvx push` to start a new remote there")

    def ensure_root(self, create: bool = True) -> None:
        """Create the directory (directory remotes, with ``create``; else refuse a
        missing one) or check that the bucket exists."""
        if self.spec.protocol == "file":
            if not os.path.isdir(self.spec.root):
                if not create:
                    raise self.missing_root_error()
                with self._guard("create", ""):
                    os.makedirs(self.spec.root, exist_ok=True)
            return

        def call() -> None:
            bucket = self.spec.root.split("/")[0]
            if self._s3 is not None:
                try:
                    self._s3.head_bucket(Bucket=bucket)
                except Exception as exc:
                    if _s3_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                        raise self._missing_bucket() from None
                    raise
            elif not self.fs.exists(bucket):
                raise self._missing_bucket()
        self._call("open", "", call)


def _gcs_single_attempt(fs: Any) -> bool:
    """Make gcsfs try each request once (DVX retries). gcsfs fixes its retry count when
    its class is defined (``@retry_request(retries=6)``); the instance gets the same
    methods re-decorated with one attempt. Returns False if gcsfs changed shape."""
    import types

    try:
        from gcsfs.retry import retry_request
    except ImportError:  # pragma: no cover - another gcsfs
        return False
    done = 0
    for name in ("_request", "_get_file_request", "_get_file_concurrent"):
        inner = getattr(getattr(type(fs), name, None), "__wrapped__", None)
        if inner is None:
            continue
        setattr(fs, name, types.MethodType(retry_request(retries=1)(inner), fs))
        done += 1
    return done > 0 and hasattr(fs, "_request")


def _azure_single_attempt(fs: Any, connect_timeout: float, read_timeout: float) -> bool:
    """Make the Azure SDK try each request once (DVX retries), with DVX's timeouts on
    every request. Its retry policy (``ExponentialRetry``: 3 retries after 15-45 s of
    back-off) and its transport are shared by every container and blob client of
    adlfs's service client; adlfs passes the timeouts to a few calls only (a HEAD got
    the SDK's 60 s). Returns False if the SDK changed shape."""
    config = getattr(getattr(fs, "service_client", None), "_config", None)
    policy = getattr(config, "retry_policy", None)
    names = ("total_retries", "connect_retries", "read_retries", "status_retries")
    if policy is None or not all(isinstance(getattr(policy, n, None), int) for n in names):
        return False
    for n in names:
        setattr(policy, n, 0)
    connection = getattr(getattr(config, "transport", None), "connection_config", None)
    if connection is not None and hasattr(connection, "read_timeout"):
        connection.timeout = connect_timeout
        connection.read_timeout = read_timeout
    return True


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _s3_code(exc: BaseException) -> str | None:
    """The error code of a botocore ``ClientError`` (``NoSuchKey``, ``404``, ...)."""
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):
        code = resp.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def _status_code(exc: BaseException) -> int | None:
    for attr in ("status_code", "status", "code"):
        v = getattr(exc, attr, None)
        if isinstance(v, int) and 100 <= v < 600:
            return v
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):
        code = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(code, int):
            return code
    return None


def _is_timeout(exc: BaseException) -> bool:
    """No answer in time: socket/asyncio timeouts and the SDKs' wrappers of them."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        name = type(e).__name__.lower()
        if isinstance(e, TimeoutError) or "timeout" in name:
            return True
        e = e.__cause__ or e.__context__
    return False


def _is_missing_bucket(exc: BaseException) -> bool:
    low = str(exc).lower()
    return "nosuchbucket" in low or "bucket does not exist" in low or "containernotfound" in low \
        or "specified container does not exist" in low


def _mtime(info: dict[str, Any]) -> float | None:
    for k in ("mtime", "LastModified", "last_modified", "updated", "created"):
        v = info.get(k)
        if v is None:
            continue
        if isinstance(v, (int, float)):
            return float(v)
        ts = getattr(v, "timestamp", None)
        if callable(ts):
            return float(ts())
        if isinstance(v, str):
            from datetime import datetime

            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
    return None


# Storages in this process: a forked child (a DataLoader worker) must not share its
# parent's sockets, nor use s3fs's event loop, which exists only in the parent.
_STORAGES: weakref.WeakSet[RemoteStorage] = weakref.WeakSet()


def _storages_after_fork() -> None:
    for storage in list(_STORAGES):
        storage._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_storages_after_fork)
