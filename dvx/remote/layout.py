"""A remote's layout and records (``protocols/remote.md`` §1-2), over ``RemoteStorage``.

Also the local cache of a remote's immutable index files
(``.dvx/state/remotes/<name>/index/``), so each index is downloaded once.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Any

from dvx.config import RemoteConfig
from dvx.errors import CorruptObjectError, FormatVersionError, RemoteError
from dvx.fsutil import random_token, write_cache_file
from dvx.hashing import is_hex_id
from dvx.remote.storage import KeyNotFound, RemoteStorage, parse_url
from dvx.store.pack import IdxFile

REMOTE_FORMAT = 1
MARKER_KEY = "dvx-remote.json"
KNOWN_EXTENSIONS: frozenset[str] = frozenset()


def check_name(name: object, what: str = "pack") -> str:
    """A pack or root name read from a remote (root records, listings) is untrusted:
    only 64 lowercase hex digits may become part of a key or a local cache path."""
    if not (isinstance(name, str) and is_hex_id(name)):
        raise CorruptObjectError(f"invalid {what} name {str(name)[:80]!r} on the remote",
                                 "the remote was written by something other than dvx; run "
                                 "`dvx fsck --remote` and push again from a machine that has the data")
    return name


def pack_key(name: str) -> str:
    check_name(name)
    return f"packs/{name[:2]}/{name}.pack"


def index_key(name: str) -> str:
    check_name(name)
    return f"index/{name}.idx"


def root_key(root_hex: str) -> str:
    check_name(root_hex, "root")
    return f"roots/{root_hex}.json"


@dataclass
class RootRecord:
    root: str
    kind: str
    packs: list[str]
    objects: int
    size: int

    def encode(self) -> bytes:
        return json.dumps({"dvx_remote_root": 1, "root": self.root, "kind": self.kind,
                           "packs": sorted(self.packs), "objects": self.objects,
                           "bytes": self.size}, sort_keys=True).encode()

    @classmethod
    def parse(cls, data: bytes, where: str) -> RootRecord:
        try:
            obj = json.loads(data)
            if obj.get("dvx_remote_root") != 1:
                raise FormatVersionError(f"{where} has root record version {obj.get('dvx_remote_root')}",
                                         "upgrade dvx")
            rec = cls(check_name(obj["root"], "root"), obj["kind"],
                      [check_name(p) for p in obj["packs"]], int(obj["objects"]), int(obj["bytes"]))
            if rec.kind not in ("file", "tree") or rec.objects < 0 or rec.size < 0:
                raise ValueError(rec.kind)
            return rec
        except CorruptObjectError as exc:
            raise CorruptObjectError(f"{where}: {exc.message}", exc.hint) from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise CorruptObjectError(
                f"{where} is not a valid root record",
                "run `dvx fsck --remote` and push again from a machine that has the data") from None


class Remote:
    """One configured remote: storage, version gate, cached indexes, root records."""

    def __init__(self, config: RemoteConfig, state_dir: str, base_dir: str) -> None:
        self.name = config.name
        self.url = config.url
        self.storage = RemoteStorage(parse_url(config.name, config.url, base_dir), config.options)
        self.cache_dir = os.path.join(state_dir, "remotes", _safe(config.name))
        self._indexes: dict[str, IdxFile] = {}
        self._lock = threading.Lock()
        self.requests = 0  # approximate count of storage calls, for benchmarks
        self._id: str | None = None  # from the marker, read once (see _identity)

    # -- version gate ----------------------------------------------------------------
    def check_format(self, create: bool, create_root: bool = False) -> None:
        """Refuse a remote of another format; with ``create``, write the marker of an
        empty one. A directory remote's directory must exist (``remote add`` creates
        it): a missing one is a typo or an unmounted drive, unless ``create_root``."""
        if not self.storage.root_exists():
            if not (create and create_root):
                raise self.storage.missing_root_error()
            self.storage.ensure_root(create=True)
        try:
            raw = self.storage.read(MARKER_KEY)
            self.requests += 1
        except KeyNotFound:
            self.requests += 1
            if not create:
                return  # an empty remote: nothing to read yet
            self.storage.ensure_root(create=create_root)
            # the id lets a machine tell this remote from a wiped or replaced one at the
            # same URL (see known_roots)
            self._id = random_token(16)
            self.storage.write(MARKER_KEY, json.dumps({"format": REMOTE_FORMAT, "id": self._id}).encode())
            self.requests += 2
            return
        try:
            meta: dict[str, Any] = json.loads(raw)
            version = int(meta["format"])
        except (ValueError, KeyError, TypeError):
            raise RemoteError(f"remote {self.name!r} ({self.url}): {MARKER_KEY} is not valid",
                              "is this URL a DVX remote?") from None
        rid = meta.get("id")
        self._id = rid if isinstance(rid, str) and rid.isalnum() else "-"
        unknown = [e for e in meta.get("extensions", []) if e not in KNOWN_EXTENSIONS]
        if version != REMOTE_FORMAT or unknown:
            raise FormatVersionError(
                f"remote {self.name!r} ({self.url}) uses remote format {version}"
                + (f" with extensions {unknown}" if unknown else "")
                + f"; this dvx reads format {REMOTE_FORMAT}", "upgrade dvx")

    # -- indexes ------------------------------------------------------------------------
    def _cached_index_path(self, name: str) -> str:
        return os.path.join(self.cache_dir, "index", check_name(name) + ".idx")

    def index(self, name: str) -> IdxFile:
        """A pack's index: from the local cache, else downloaded (and cached)."""
        with self._lock:
            if name in self._indexes:
                return self._indexes[name]
        path = self._cached_index_path(name)
        if not os.path.exists(path):
            try:
                data = self.storage.read(index_key(name))
                self.requests += 1
            except KeyNotFound:
                raise RemoteError(f"remote {self.name!r} ({self.url}): index of pack {name} is missing",
                                  "run `dvx fsck --remote` and push again") from None
            if not write_cache_file(path, data):  # e.g. a full disk: use it uncached
                idx = IdxFile(path, name, data)
                with self._lock:
                    self._indexes[name] = idx
                return idx
        try:
            idx = IdxFile(path, name)
        except CorruptObjectError:
            os.unlink(path)  # a bad cached copy is refetched next time
            raise
        with self._lock:
            self._indexes[name] = idx
        return idx

    def remember_index(self, name: str, data: bytes) -> None:
        write_cache_file(self._cached_index_path(name), data)  # a cache: best effort

    def list_pack_names(self) -> list[str]:
        """Packs whose index is on the remote (one LIST, paginated by the backend)."""
        self.requests += 1
        names = []
        for key, _size, _mtime in self.storage.list("index"):
            base = key.rsplit("/", 1)[-1]
            if base.endswith(".idx") and len(base) == 68:
                names.append(base[:-4])
        return sorted(names)

    # -- what this machine knows the remote holds ---------------------------------------
    def _known_path(self) -> str:
        return os.path.join(self.cache_dir, "roots-known")

    def _identity(self) -> str | None:
        """The remote's id from its marker (one request), ``"-"`` for a remote written
        before ids existed, None when there is no marker (an empty or wiped remote)."""
        if self._id is None:
            try:
                raw = self.storage.read(MARKER_KEY)
            except KeyNotFound:
                return None
            finally:
                self.requests += 1
            try:
                rid = json.loads(raw).get("id")
            except (ValueError, AttributeError):
                rid = None
            self._id = rid if isinstance(rid, str) and rid.isalnum() else "-"
        return self._id

    def _known_header(self, rid: str) -> str:
        return f"url {self.url} id {rid}"

    def known_roots(self) -> set[str]:
        """Roots this machine pushed to, or found complete on, this remote.

        DVX never deletes root records (remote gc keeps them), so the set goes stale
        only if the remote is wiped or replaced by other means; one request (the
        remote's marker and its id) catches that. `dvx push --verify` re-checks every
        root."""
        try:
            with open(self._known_path(), encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError:
            return set()
        if not lines or not lines[0].startswith(f"url {self.url} id "):
            return set()
        rid = self._identity()
        if rid is None or lines[0] != self._known_header(rid):
            return set()
        return {x for x in lines[1:] if is_hex_id(x)}

    def remember_roots(self, roots: set[str]) -> None:
        rid = self._identity()
        if rid is None:
            return
        known = self.known_roots() | roots
        text = "\n".join([self._known_header(rid), *sorted(known)]) + "\n"
        write_cache_file(self._known_path(), text.encode())  # a cache: best effort

    # -- root records --------------------------------------------------------------------
    def has_root(self, root_hex: str) -> bool:
        self.requests += 1
        return self.storage.exists(root_key(root_hex))

    def read_root(self, root_hex: str) -> RootRecord | None:
        self.requests += 1
        try:
            data = self.storage.read(root_key(root_hex))
        except KeyNotFound:
            return None
        rec = RootRecord.parse(data, f"remote {self.name!r} roots/{root_hex[:12]}")
        if rec.root != root_hex:
            raise CorruptObjectError(f"remote {self.name!r} roots/{root_hex[:12]} describes another root",
                                     "run `dvx fsck --remote` and push again from a machine that has the data")
        return rec

    def write_root(self, record: RootRecord) -> None:
        self.requests += 1
        self.storage.write(root_key(record.root), record.encode())

    def list_roots(self) -> list[str]:
        self.requests += 1
        return sorted(n for n in (k.rsplit("/", 1)[-1][:-5] for k, _s, _m in self.storage.list("roots")
                                  if k.endswith(".json")) if is_hex_id(n))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
