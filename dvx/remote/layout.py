"""A remote's layout and records (``protocols/remote.md`` §1-2), over ``RemoteStorage``.

Also the local cache of a remote's immutable index files
(``.dvx/state/remotes/<name>/index/``), so each index is downloaded once.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from dvx.errors import CorruptObjectError, FormatVersionError, RemoteError
from dvx.fsutil import random_token, write_cache_file
from dvx.hashing import is_hex_id
from dvx.remote.storage import TEMP_PREFIX, KeyNotFound, RemoteStorage, parse_url
from dvx.settings import RemoteConfig
from dvx.store.pack import IdxFile, PackFile

REMOTE_FORMAT = 1
MARKER_KEY = "dvx-remote.json"
KNOWN_EXTENSIONS: frozenset[str] = frozenset()


class PackMissingError(RemoteError):
    """A pack named by an index or a root record is not on the remote."""


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
    """One configured remote: storage, version gate, cached indexes, packs, root records.

    It owns the remote's key layout and write order (``protocols/remote.md`` §3): a
    pack is uploaded before its index, and a root record is written only once every
    pack it lists is known to be there with its index (uploaded by this object, or
    listed on the remote by ``list_pack_names``); deletion removes an index before its
    pack. It counts its own storage requests (``requests``)."""

    def __init__(self, config: RemoteConfig, state_dir: str, base_dir: str) -> None:
        self._args = (config, state_dir, base_dir)
        self.name = config.name
        self.url = config.url
        self._storage = RemoteStorage(parse_url(config.name, config.url, base_dir), config.options)
        self.cache_dir = os.path.join(state_dir, "remotes", _safe(config.name))
        self._indexes: dict[str, IdxFile] = {}
        self._lock = threading.Lock()
        self._requests = 0
        self._present: set[str] = set()  # packs known to be on the remote with their index
        self._id: str | None = None  # from the marker, read once (see _identity)
        _REMOTES.add(self)

    def __reduce__(self) -> tuple[type[Remote], tuple[RemoteConfig, str, str]]:
        """Pickled as its configuration (a ``spawn``ed worker gets a fresh client)."""
        return Remote, self._args

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    @property
    def requests(self) -> int:
        """Storage requests made so far (approximate: one per call; for reports)."""
        return self._requests

    def _count(self, n: int = 1) -> None:
        with self._lock:
            self._requests += n

    @property
    def on_retry(self) -> Callable[[str], None] | None:
        """Told about each retry of a transient failure (e.g. ``progress.note``)."""
        return self._storage.on_retry

    @on_retry.setter
    def on_retry(self, fn: Callable[[str], None] | None) -> None:
        self._storage.on_retry = fn

    def root_exists(self) -> bool:
        """Whether a directory remote's directory exists (a stat, no request); cloud
        remotes: True."""
        return self._storage.root_exists()

    def missing_root_error(self) -> RemoteError:
        return self._storage.missing_root_error()

    # -- version gate ----------------------------------------------------------------
    def check_format(self, create: bool, create_root: bool = False) -> None:
        """Refuse a remote of another format; with ``create``, write the marker of an
        empty one. A directory remote's directory must exist (``remote add`` creates
        it): a missing one is a typo or an unmounted drive, unless ``create_root``."""
        if not self._storage.root_exists():
            if not (create and create_root):
                raise self._storage.missing_root_error()
            self._storage.ensure_root(create=True)
        try:
            self._count()
            raw = self._storage.read(MARKER_KEY)
        except KeyNotFound:
            if not create:
                return  # an empty remote: nothing to read yet
            self._count(2)
            self._storage.ensure_root(create=create_root)
            # the id lets a machine tell this remote from a wiped or replaced one at the
            # same URL (see known_roots)
            self._id = random_token(16)
            self._storage.write(MARKER_KEY, json.dumps({"format": REMOTE_FORMAT, "id": self._id}).encode())
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
                self._count()
                data = self._storage.read(index_key(name))
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

    def _remember_index(self, name: str, data: bytes) -> None:
        write_cache_file(self._cached_index_path(name), data)  # a cache: best effort

    def list_pack_names(self) -> list[str]:
        """Packs whose index is on the remote (one LIST, paginated by the backend)."""
        self._count()
        names = []
        for key, _size, _mtime in self._storage.list("index"):
            base = key.rsplit("/", 1)[-1]
            if base.endswith(".idx") and len(base) == 68:
                names.append(base[:-4])
        with self._lock:
            self._present.update(names)
        return sorted(names)

    # -- packs ------------------------------------------------------------------------------
    def put_pack(self, pack: PackFile) -> None:
        """Upload a pack, then its index (remote.md §3: an index never names a pack
        that is not there). Both keys are content-named: a retry rewrites the same bytes."""
        self._count(2)
        self._storage.upload(pack_key(pack.name), pack.path)  # the pack first...
        self._storage.write(index_key(pack.name), pack.idx)  # ...then its index
        self._remember_index(pack.name, pack.idx)
        with self._lock:
            self._present.add(pack.name)

    def put_packs(self, packs: Iterable[PackFile], jobs: int,
                  on_done: Callable[[PackFile], None] | None = None) -> None:
        """Upload packs ``jobs`` at a time, as ``packs`` yields them; each is
        ``discard``ed once uploaded (or failed), and ``on_done`` is called after each
        upload. At most ``jobs + 1`` yielded packs wait for their upload, so a producer
        that writes temporary packs keeps little on disk. Raises the first failure
        after the uploads in flight have ended."""
        from concurrent.futures import Future, ThreadPoolExecutor

        def send(pack: PackFile) -> None:
            try:
                self.put_pack(pack)
            finally:
                pack.discard()
            if on_done is not None:
                on_done(pack)

        slots = max(1, jobs)
        with ThreadPoolExecutor(slots, thread_name_prefix="dvx-upload") as pool:
            sent: list[tuple[Future[None], PackFile]] = []
            it = iter(packs)
            try:
                for pack in it:
                    try:
                        while sum(1 for f, _ in sent if not f.done()) >= slots + 1:
                            next(f for f, _ in sent if not f.done()).result()
                    except BaseException:
                        pack.discard()
                        raise
                    sent.append((pool.submit(send, pack), pack))
                for f, _ in sent:
                    f.result()
            except BaseException:
                for f, pack in sent:
                    if f.cancel():
                        pack.discard()
                close = getattr(it, "close", None)
                if close is not None:
                    close()  # a generator removes its partial file
                raise

    def _missing_pack(self, name: str) -> PackMissingError:
        return PackMissingError(f"remote {self.name!r} ({self.url}) is damaged: pack {name[:12]} is missing",
                                f"run `dvx fsck --remote {self.name}` to see what it lost")

    def get_pack(self, name: str, local_path: str) -> None:
        """Download a pack to a local file (the caller verifies it: ``Store.adopt_pack``)."""
        self._count()
        try:
            self._storage.download(pack_key(name), local_path)
        except KeyNotFound:
            raise self._missing_pack(name) from None

    def read_pack_into(self, name: str, view: memoryview) -> None:
        """A whole pack into ``view`` (its size, from the pack's index); the caller
        verifies it (``Store.adopt_pack_buffer``)."""
        self._count()
        try:
            self._storage.read_into(pack_key(name), view)
        except KeyNotFound:
            raise self._missing_pack(name) from None

    @contextlib.contextmanager
    def downloaded_pack(self, name: str) -> Iterator[str]:
        """A pack downloaded to a temporary file of this remote's cache, removed after."""
        os.makedirs(self.cache_dir, exist_ok=True)
        tmp = os.path.join(self.cache_dir, f"download-{random_token(6)}.pack")
        try:
            self.get_pack(name, tmp)
            yield tmp
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def read_pack_range(self, name: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of a pack (one ranged GET)."""
        self._count()
        try:
            return self._storage.read_range(pack_key(name), start, end)
        except KeyNotFound:
            raise self._missing_pack(name) from None

    def pack_size(self, name: str) -> int | None:
        """Size of a pack on the remote, None if absent."""
        self._count()
        try:
            return self._storage.size(pack_key(name))
        except KeyNotFound:
            return None

    def list_packs(self) -> dict[str, tuple[int, float | None]]:
        """``{name: (size, mtime)}`` of every pack file on the remote (one LIST)."""
        self._count()
        return {k.rsplit("/", 1)[-1][:-5]: (s, m) for k, s, m in self._storage.list("packs")
                if k.endswith(".pack")}

    def list_indexes(self) -> dict[str, float | None]:
        """``{name: mtime}`` of every pack index on the remote (one LIST)."""
        self._count()
        return {k.rsplit("/", 1)[-1][:-4]: m for k, _s, m in self._storage.list("index")
                if k.endswith(".idx")}

    def delete_pack(self, name: str) -> None:
        """Delete a pack and its index, the index first (the pack becomes invisible)."""
        self._count(2)
        with self._lock:
            self._present.discard(name)
        self._storage.delete(index_key(name))
        self._storage.delete(pack_key(name))

    def list_temporary(self) -> list[tuple[str, int, float | None]]:
        """``(key, size, mtime)`` of temporary files of uploads in progress or killed
        (directory remotes; see ``RemoteStorage.list_temporary``)."""
        return self._storage.list_temporary()

    def delete_temporary(self, key: str) -> None:
        """Delete one of ``list_temporary``'s files."""
        if not os.path.basename(key).startswith(TEMP_PREFIX):
            raise ValueError(f"{key} is not a temporary file")
        self._count()
        self._storage.delete(key)

    # -- what this machine knows the remote holds ---------------------------------------
    def _known_path(self) -> str:
        return os.path.join(self.cache_dir, "roots-known")

    def _identity(self) -> str | None:
        """The remote's id from its marker (one request), ``"-"`` for a remote written
        before ids existed, None when there is no marker (an empty or wiped remote)."""
        if self._id is None:
            self._count()
            try:
                raw = self._storage.read(MARKER_KEY)
            except KeyNotFound:
                return None
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
        self._count()
        return self._storage.exists(root_key(root_hex))

    def read_root(self, root_hex: str) -> RootRecord | None:
        self._count()
        try:
            data = self._storage.read(root_key(root_hex))
        except KeyNotFound:
            return None
        rec = RootRecord.parse(data, f"remote {self.name!r} roots/{root_hex[:12]}")
        if rec.root != root_hex:
            raise CorruptObjectError(f"remote {self.name!r} roots/{root_hex[:12]} describes another root",
                                     "run `dvx fsck --remote` and push again from a machine that has the data")
        return rec

    def write_root(self, record: RootRecord) -> None:
        """Write a root record: the promise that its closure is in the listed packs.
        Refused unless every listed pack is known to be on the remote with its index
        (uploaded by ``put_pack``, or listed by ``list_pack_names``): a record is
        always the last thing written (remote.md §3)."""
        with self._lock:
            unknown = sorted(set(record.packs) - self._present)
        if unknown:
            raise RemoteError(f"remote {self.name!r} ({self.url}): refusing to write the root record of "
                              f"{record.root[:12]} before its packs ({', '.join(n[:12] for n in unknown)}) "
                              "are uploaded", "this is a bug in dvx; please report it")
        self._count()
        self._storage.write(root_key(record.root), record.encode())

    def list_roots(self) -> list[str]:
        self._count()
        return sorted(n for n in (k.rsplit("/", 1)[-1][:-5] for k, _s, _m in self._storage.list("roots")
                                  if k.endswith(".json")) if is_hex_id(n))


_REMOTES: weakref.WeakSet[Remote] = weakref.WeakSet()


def _remotes_after_fork() -> None:
    for remote in list(_REMOTES):
        remote._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_remotes_after_fork)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
