"""Remote storage backends: one small interface over fsspec (``protocols/remote.md``).

Interface contract (every backend, checked by ``tests/test_remote_conformance.py``):

* keys are ``/``-separated paths relative to the remote root;
* ``write``/``upload`` are atomic: a reader sees the whole object or nothing;
* ``read``/``read_range``/``size`` raise ``KeyNotFound`` for a missing key, and
  nothing else does; every other failure is a ``RemoteError`` naming the remote, its
  URL and what to check;
* every call may be retried by the caller (all writes are of immutable, content-named
  keys).

Backends: a directory (``/path``, ``file://``), ``s3://`` (s3fs), ``gs://`` (gcsfs),
``az://``/``abfs://`` (adlfs). Backend packages are imported lazily; a missing one is a
clear "pip install dvx[s3]" message.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from dvx.errors import RemoteError
from dvx.fsutil import random_token

SCHEMES = {"": "file", "file": "file", "s3": "s3", "gs": "gcs", "gcs": "gcs", "az": "az",
           "abfs": "az", "azure": "az"}
EXTRAS = {"s3": ("s3fs", "s3"), "gcs": ("gcsfs", "gcs"), "az": ("adlfs", "azure")}
SECRET_WORDS = ("secret", "password", "token", "connection_string", "account_key", "sas",
                "credential", "key")
CONNECT_TIMEOUT = 3.0


class KeyNotFound(Exception):
    pass


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
        self.options = dict(options)
        self._fs: Any = None

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
            opts.setdefault("config_kwargs", {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": 60,
                                              "retries": {"max_attempts": 3, "mode": "standard"},
                                              "s3": {"payload_signing_enabled": False}})
            if "anon" in opts:
                opts["anon"] = str(opts["anon"]).lower() in ("1", "true", "yes")
        try:
            fs = fsspec.filesystem(proto, **opts)
        except Exception as exc:
            raise self._error(f"cannot be opened: {_short(exc)}",
                              "check the -o options with `dvx remote list`") from None
        if proto == "s3":
            fs.retries = 3
        return fs

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
            with socket.create_connection(ep, timeout=CONNECT_TIMEOUT):
                pass
        except OSError as exc:
            raise self._error(f"cannot connect to {ep[0]}:{ep[1]} ({exc.strerror or exc})",
                              "check that the endpoint is right and the server is running") from None

    def _path(self, key: str) -> str:
        return f"{self.spec.root}/{key}" if key else self.spec.root

    # -- error mapping -----------------------------------------------------------------
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
        if "quota" in low or "slowdown" in low or code == 429:
            return self._error(f"quota or rate limit hit while trying to {action} {key}",
                               "retry later or raise the quota")
        if any(w in low for w in ("connect", "timeout", "timed out", "connection", "reset",
                                  "broken pipe", "serverdisconnected", "payload", "incomplete",
                                  "endpoint", "servicerequesterror", "eof")):
            return self._error(f"connection failed while trying to {action} {key} ({text})",
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
        with self._guard("inspect", key):
            info = self.fs.info(self._path(key))
            if info.get("type") == "directory":
                raise KeyNotFound(key)
            return int(info["size"])

    def read(self, key: str) -> bytes:
        with self._guard("read", key):
            return bytes(self.fs.cat_file(self._path(key)))

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``; raises a RemoteError if fewer come back."""
        with self._guard("read", key):
            data = bytes(self.fs.cat_file(self._path(key), start=start, end=end))
        if len(data) != end - start:
            raise self._error(f"short read of {key} ({len(data)} of {end - start} bytes)",
                              "re-run; if it persists run `dvx fsck --remote`")
        return data

    def download(self, key: str, local_path: str) -> None:
        """Copy a key to a local file (the caller verifies and renames it)."""
        with self._guard("download", key):
            self.fs.get_file(self._path(key), local_path)

    def write(self, key: str, data: bytes) -> None:
        with self._guard("write", key):
            if self.spec.protocol == "file":
                self._local_atomic(key, lambda tmp: _write_file(tmp, data))
            else:
                self.fs.pipe_file(self._path(key), data)

    def upload(self, key: str, local_path: str) -> None:
        with self._guard("upload", key):
            if self.spec.protocol == "file":
                import shutil

                self._local_atomic(key, lambda tmp: shutil.copyfile(local_path, tmp))
            else:
                self.fs.put_file(local_path, self._path(key))

    def _local_atomic(self, key: str, fill) -> None:  # type: ignore[no-untyped-def]
        final = self._path(key)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = os.path.join(os.path.dirname(final), f".tmp-{random_token(8)}")
        try:
            fill(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def list(self, prefix: str) -> list[tuple[str, int, float | None]]:
        """``(key, size, mtime)`` of every object below ``prefix`` (recursive)."""
        base = self._path(prefix).rstrip("/")
        with self._guard("list", prefix):
            try:
                found = self.fs.find(base, detail=True)
            except FileNotFoundError as exc:
                if _is_missing_bucket(exc):
                    raise self._missing_bucket() from None
                return []
        out = []
        root = self.spec.root.rstrip("/") + "/"
        for path, info in found.items():
            path = path if not path.startswith("/") or self.spec.protocol == "file" else path
            rel = path[len(root):] if path.startswith(root) else path.split(root, 1)[-1]
            if os.path.basename(rel).startswith(".tmp-"):
                continue
            out.append((rel, int(info.get("size") or 0), _mtime(info)))
        return out

    def delete(self, key: str) -> None:
        with self._guard("delete", key), contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(key))

    def ensure_root(self) -> None:
        """Create the directory (directory remotes) or check that the bucket exists."""
        with self._guard("open", ""):
            if self.spec.protocol == "file":
                os.makedirs(self.spec.root, exist_ok=True)
                return
            bucket = self.spec.root.split("/")[0]
            if not self.fs.exists(bucket):
                raise self._missing_bucket()


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


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
