"""Repository configuration: ``.dvx/config`` (committed) and ``.dvx/config.local``.

Implements ``protocols/format.md`` §1. Both files use git-config-like INI syntax
(``[core]``, ``[chunker]``, ``[remote "origin"]``). The committed file holds the format
version and the chunker parameters, fixed when the repository is created; the local
file (never committed) holds per-machine settings and secrets. Values in the local
file override the committed one.
"""

from __future__ import annotations

import configparser
import os
import re
from dataclasses import dataclass, field
from typing import Any

from dvx.chunking import params
from dvx.errors import ConfigError, FormatVersionError
from dvx.fsutil import atomic_write_bytes
from dvx.validcache import NO_MEMO, ValidationMemo

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
class RemoteConfig:
    name: str
    url: str
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RepoConfig:
    """Validated configuration (rules: ``dvx.models.ConfigModel``)."""

    core: CoreConfig = CoreConfig()
    chunker: ChunkerConfig = ChunkerConfig()
    remotes: dict[str, RemoteConfig] = field(default_factory=dict)
    gc: GcConfig = GcConfig()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RepoConfig:
        return cls(
            core=CoreConfig(**{**d["core"], "extensions": tuple(d["core"]["extensions"])}),
            chunker=ChunkerConfig(**d["chunker"]),
            remotes={n: RemoteConfig(**r) for n, r in d["remotes"].items()},
            gc=GcConfig(**d.get("gc", {})),
        )


def _read_ini(path: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f, source=path)
    except FileNotFoundError:
        pass
    except (configparser.Error, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{path} is not valid config: {first}", "fix or restore the file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check its permissions") from None
    return parser


def _parse_bool(value: str, where: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def _raw(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check its permissions") from None


def load_config(dvx_dir: str, memo: ValidationMemo = NO_MEMO) -> RepoConfig:
    """Read and validate the committed and local config; refuse unknown versions."""
    shared_path = os.path.join(dvx_dir, "config")
    if not os.path.exists(shared_path):
        raise ConfigError(f"{shared_path} is missing", "run `dvx init` to recreate it")
    key = _raw(shared_path) + b"\0\0" + _raw(os.path.join(dvx_dir, "config.local"))
    known = memo.get("config", key)
    if known is not None:
        return RepoConfig.from_dict(known)
    config = _validate(dvx_dir, shared_path)
    memo.put("config", key, config)
    return RepoConfig.from_dict(config)


def _validate(dvx_dir: str, shared_path: str) -> dict[str, Any]:
    shared = _read_ini(shared_path)
    local = _read_ini(os.path.join(dvx_dir, "config.local"))
    core: dict[str, object] = {}
    chunker: dict[str, object] = {}
    remotes: dict[str, dict[str, object]] = {}
    gc: dict[str, object] = {}
    for parser, where in ((shared, shared_path), (local, "config.local")):
        for section in parser.sections():
            items = dict(parser.items(section))
            if section == "core":
                for k, v in items.items():
                    if k == "format":
                        core[k] = v
                    elif k == "extensions":
                        core[k] = tuple(x for x in v.replace(",", " ").split() if x)
                    elif k in ("fsync", "direct_io", "autostage"):
                        core[k] = _parse_bool(v, f"{where} [core] {k}")
                    else:
                        core[k] = v
            elif section == "gc":
                gc.update(items)
            elif section == "chunker":
                if parser is local:
                    raise ConfigError("chunker settings may not be overridden in config.local")
                chunker.update(items)
            elif m := _REMOTE_SECTION.match(section):
                entry = remotes.setdefault(m.group(1), {"name": m.group(1), "options": {}})
                for k, v in items.items():
                    if k == "url":
                        entry["url"] = v
                    else:
                        entry["options"][k] = v  # type: ignore[index]
            else:
                raise ConfigError(f"{where}: unknown section [{section}]", "remove it")
    try:
        fmt = int(str(core.get("format", FORMAT_VERSION)))
    except ValueError:
        raise ConfigError(f"{shared_path}: [core] format is not a number") from None
    if fmt != FORMAT_VERSION:
        raise FormatVersionError(
            f"this repository uses DVX format {fmt}; this dvx reads format {FORMAT_VERSION}",
            "upgrade dvx (pip install -U dvx)",
        )
    unknown = [e for e in core.get("extensions", ()) if e not in KNOWN_EXTENSIONS]  # type: ignore[attr-defined]
    if unknown:
        raise FormatVersionError(
            f"this repository requires format extensions this dvx does not know: "
            f"{', '.join(unknown)}",
            "upgrade dvx",
        )
    for name, entry in remotes.items():
        if "url" not in entry:
            raise ConfigError(f'remote "{name}" has no url', f"run `dvx remote add {name} URL`")
    from pydantic import ValidationError

    from dvx.models import ConfigModel

    try:
        model = ConfigModel.model_validate({"core": core, "chunker": chunker, "remotes": remotes,
                                              "gc": gc})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{shared_path}: {loc}: {msg}", "fix the config file") from None
    return model.model_dump()


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


def edit_config(dvx_dir: str, local: bool, edit) -> None:  # type: ignore[no-untyped-def]
    """Apply ``edit(parser)`` to the committed or local config file, atomically."""
    path = os.path.join(dvx_dir, "config.local" if local else "config")
    parser = _read_ini(path)
    edit(parser)
    lines: list[str] = []
    for section in parser.sections():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {v}" for k, v in parser.items(section))
        lines.append("")
    atomic_write_bytes(path, "\n".join(lines).encode(), mode=0o600 if local else 0o644)
