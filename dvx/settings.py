"""Repository configuration: ``.dvx/config`` (committed) and ``.dvx/config.local``.

Implements ``protocols/format.md`` §1. Both files use git-config-like INI syntax
(``[core]``, ``[chunker]``, ``[remote "origin"]``). The committed file holds the format
version and the chunker parameters, fixed when the repository is created; the local
file (never committed) holds per-machine settings and secrets. Values in the local
file override the committed one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from dvx.chunking import params
from dvx.errors import ConfigError, FormatVersionError
from dvx.fsutil import atomic_write_bytes
from dvx.ini import IniFile

FORMAT_VERSION = 1
KNOWN_EXTENSIONS: frozenset[str] = frozenset()
_REMOTE_SECTION = re.compile(r'^remote\s+"([A-Za-z0-9_.-]+)"$')


@dataclass(frozen=True)
class ChunkerConfig:
    algorithm: str = params.ALGORITHM
    min_size: int = params.DEFAULT_MIN_SIZE
    avg_size: int = params.DEFAULT_AVG_SIZE
    max_size: int = params.DEFAULT_MAX_SIZE
    normalization: int = params.DEFAULT_NORMALIZATION
    seed: int = params.DEFAULT_SEED


@dataclass(frozen=True)
class CoreConfig:
    format: int = FORMAT_VERSION
    extensions: tuple[str, ...] = ()
    default_remote: str | None = None
    fsync: bool = True
    direct_io: bool = True
    autostage: bool = False


@dataclass(frozen=True)
class GcConfig:
    #: reflog entries younger than this keep their commits' data (git's gc.reflogExpire);
    #: 0: the reflog protects nothing
    reflog_expire_days: int = 90


@dataclass(frozen=True)
class CacheConfig:
    #: cap of the shared chunk cache (``dvx.store.chunkcache``), e.g. "10G"; None: the
    #: default (``DVX_CACHE_SIZE`` overrides either)
    size: str | None = None


@dataclass(frozen=True)
class RemoteConfig:
    name: str
    url: str
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RepoConfig:
    """Validated configuration (rules: ``load_config``)."""

    core: CoreConfig = CoreConfig()
    chunker: ChunkerConfig = ChunkerConfig()
    remotes: dict[str, RemoteConfig] = field(default_factory=dict)
    gc: GcConfig = GcConfig()
    cache: CacheConfig = CacheConfig()


_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
          "off": False}


class _Values:
    """The keys of one section, merged from both files, each with the file it came from."""

    def __init__(self, section: str) -> None:
        self.section = section
        self.items: dict[str, tuple[str, str]] = {}

    def take(self, ini: IniFile, name: str) -> None:
        for k, v in ini.items(name):
            self.items[k] = (v, ini.where)

    def pop(self, key: str) -> tuple[str, str] | None:
        return self.items.pop(key, None)

    def string(self, key: str, default: str | None) -> str | None:
        found = self.pop(key)
        return default if found is None else found[0]

    def boolean(self, key: str, default: bool) -> bool:
        found = self.pop(key)
        if found is None:
            return default
        value, where = found
        parsed = _BOOLS.get(value.lower())
        if parsed is None:
            raise ConfigError(f"{where}: [{self.section}] {key}: expected true or false, got {value!r}",
                              "fix the config file")
        return parsed

    def number(self, key: str, default: int) -> int:
        found = self.pop(key)
        if found is None:
            return default
        value, where = found
        if not (value.isdigit() and value.isascii() and len(value) <= 20):
            raise ConfigError(f"{where}: [{self.section}] {key}: expected a whole number "
                              f"(0 or more), got {value[:40]!r}", "fix the config file")
        return int(value)

    def refuse_others(self) -> None:
        for key, (_value, where) in self.items.items():
            raise ConfigError(f"{where}: [{self.section}] {key}: unknown key", "remove it")


def load_config(dvx_dir: str) -> RepoConfig:
    """Read and validate the committed and local config; refuse unknown versions.

    The one validator of configuration (``protocols/format.md`` §1): hand-written, like
    ``dvx.objects`` and ``dvx.pointer``, and cheap enough to run on every command."""
    shared_path = os.path.join(dvx_dir, "config")
    if not os.path.exists(shared_path):
        raise ConfigError(f"{shared_path} is missing", "run `dvx init` to recreate it")
    shared = IniFile.read(shared_path)
    local = IniFile.read(os.path.join(dvx_dir, "config.local"))
    core, chunker, gc, cache = _Values("core"), _Values("chunker"), _Values("gc"), _Values("cache")
    remotes: dict[str, _Values] = {}
    unknown: list[str] = []
    for ini in (shared, local):
        for name in ini.sections():
            if name == "core":
                core.take(ini, name)
            elif name == "gc":
                gc.take(ini, name)
            elif name == "cache":
                cache.take(ini, name)
            elif name == "chunker":
                if ini is local:
                    raise ConfigError(f"{ini.where}: chunker settings may not be overridden in config.local",
                                      "remove the [chunker] section there")
                chunker.take(ini, name)
            elif m := _REMOTE_SECTION.match(name):
                remotes.setdefault(m.group(1), _Values(name)).take(ini, name)
            else:
                unknown.append(f"{ini.where}: unknown section [{name}]")
    # the version gate comes first (git's rule): a newer format may add what is unknown here
    fmt = core.string("format", str(FORMAT_VERSION)) or ""
    if not (fmt.isdigit() and fmt.isascii()):
        raise ConfigError(f"{shared_path}: [core] format is not a number")
    if int(fmt) != FORMAT_VERSION:
        raise FormatVersionError(
            f"this repository uses DVX format {int(fmt)}; this dvx reads format {FORMAT_VERSION}",
            "upgrade dvx (pip install -U dvx)",
        )
    extensions = tuple(x for x in (core.string("extensions", "") or "").replace(",", " ").split() if x)
    if any(e not in KNOWN_EXTENSIONS for e in extensions):
        raise FormatVersionError(
            f"this repository requires format extensions this dvx does not know: "
            f"{', '.join(e for e in extensions if e not in KNOWN_EXTENSIONS)}",
            "upgrade dvx",
        )
    if unknown:
        raise ConfigError(unknown[0], "remove it")
    config = RepoConfig(
        core=CoreConfig(
            format=FORMAT_VERSION, extensions=extensions, default_remote=core.string("default_remote", None),
            fsync=core.boolean("fsync", True), direct_io=core.boolean("direct_io", True),
            autostage=core.boolean("autostage", False)),
        chunker=_chunker(chunker, shared_path),
        remotes={name: _remote(name, values) for name, values in remotes.items()},
        gc=GcConfig(reflog_expire_days=gc.number("reflog_expire_days", GcConfig.reflog_expire_days)),
        cache=_cache(cache),
    )
    for values in (core, chunker, gc, cache):
        values.refuse_others()
    return config


def _chunker(values: _Values, where: str) -> ChunkerConfig:
    d = ChunkerConfig()
    algorithm = values.string("algorithm", d.algorithm)
    if algorithm != params.ALGORITHM:
        raise ConfigError(f"{where}: [chunker] algorithm: {algorithm!r} is not one this dvx knows "
                          f"(only {params.ALGORITHM})", "restore the config file from git")
    c = ChunkerConfig(params.ALGORITHM, values.number("min_size", d.min_size),
                      values.number("avg_size", d.avg_size), values.number("max_size", d.max_size),
                      values.number("normalization", d.normalization), values.number("seed", d.seed))
    try:
        params.check_settings(c.min_size, c.avg_size, c.max_size, c.normalization, c.seed)
    except ValueError as exc:
        raise ConfigError(f"{where}: [chunker] {exc}", "restore the config file from git") from None
    return c


def _cache(values: _Values) -> CacheConfig:
    found = values.pop("size")
    if found is None:
        return CacheConfig()
    parse_size(found[0], f"{found[1]}: [cache] size")  # refused here, not on first read
    return CacheConfig(size=found[0])


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40,
          "tib": 1 << 40}


def parse_size(text: str, where: str) -> int:
    """``"10G"``, ``"512MiB"``, ``"1000000"`` (bytes) -> bytes. Binary units."""
    raw = text.strip().lower().replace(" ", "")
    digits = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(digits):]
    try:
        value = float(digits) if digits else -1.0
    except ValueError:
        value = -1.0
    if value < 0 or unit not in _UNITS or value != value or value > 1 << 62:
        raise ConfigError(f"{where}: {text[:40]!r} is not a size",
                          "write a number of bytes, or one with a unit: 500M, 10G, 1T")
    return int(value * _UNITS[unit])


def _remote(name: str, values: _Values) -> RemoteConfig:
    url = values.string("url", None)
    if not url:
        raise ConfigError(f'remote "{name}" has no url', f"run `dvx remote add {name} URL`")
    return RemoteConfig(name, url, {k: v for k, (v, _where) in values.items.items()})


def write_initial_config(dvx_dir: str, chunker: ChunkerConfig) -> None:
    text = (
        "# DVX repository configuration (committed). Chunker settings are fixed for the\n"
        "# life of the repository: changing them changes every id.\n"
        "[core]\n"
        f"format = {FORMAT_VERSION}\n"
        "\n[chunker]\n"
        f"algorithm = {chunker.algorithm}\n"
        f"min_size = {chunker.min_size}\n"
        f"avg_size = {chunker.avg_size}\n"
        f"max_size = {chunker.max_size}\n"
        f"normalization = {chunker.normalization}\n"
        f"seed = {chunker.seed}\n"
    )
    atomic_write_bytes(os.path.join(dvx_dir, "config"), text.encode())


def edit_config(dvx_dir: str, local: bool, edit: Callable[[IniFile], None]) -> None:
    """Apply ``edit`` to the committed or local config file and write it back
    atomically, if it changed. Every byte the edit does not touch stays as it was."""
    path = os.path.join(dvx_dir, "config.local" if local else "config")
    ini = IniFile.read(path)
    before = ini.text()
    edit(ini)
    after = ini.text()
    if after != before:
        atomic_write_bytes(path, after.encode(), mode=0o600 if local else 0o644)
