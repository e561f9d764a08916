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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dvx.chunking.params import make_cut_params
from dvx.errors import ConfigError, FormatVersionError
from dvx.fsutil import atomic_write_bytes

FORMAT_VERSION = 1
KNOWN_EXTENSIONS: frozenset[str] = frozenset()
_REMOTE_SECTION = re.compile(r'^remote\s+"([A-Za-z0-9_.-]+)"$')


class ChunkerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    algorithm: str = "fastcdc2020"
    min_size: int = 16384
    avg_size: int = 65536
    max_size: int = 262144
    normalization: int = 1
    seed: int = 0

    @model_validator(mode="after")
    def _valid(self) -> ChunkerConfig:
        if self.algorithm != "fastcdc2020":
            raise ValueError(f"unknown chunker algorithm {self.algorithm!r}")
        make_cut_params(self.min_size, self.avg_size, self.max_size, self.normalization, self.seed)
        return self


class CoreConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = FORMAT_VERSION
    extensions: tuple[str, ...] = ()
    default_remote: str | None = None
    fsync: bool = True
    autostage: bool = False


class RemoteConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    url: str
    options: dict[str, str] = Field(default_factory=dict)


class RepoConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    core: CoreConfig = CoreConfig()
    chunker: ChunkerConfig = ChunkerConfig()
    remotes: dict[str, RemoteConfig] = Field(default_factory=dict)


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


def load_config(dvx_dir: str) -> RepoConfig:
    """Read and validate the committed and local config; refuse unknown versions."""
    shared_path = os.path.join(dvx_dir, "config")
    if not os.path.exists(shared_path):
        raise ConfigError(f"{shared_path} is missing", "run `dvx init` to recreate it")
    shared = _read_ini(shared_path)
    local = _read_ini(os.path.join(dvx_dir, "config.local"))
    core: dict[str, object] = {}
    chunker: dict[str, object] = {}
    remotes: dict[str, dict[str, object]] = {}
    for parser, where in ((shared, shared_path), (local, "config.local")):
        for section in parser.sections():
            items = dict(parser.items(section))
            if section == "core":
                for k, v in items.items():
                    if k == "format":
                        core[k] = v
                    elif k == "extensions":
                        core[k] = tuple(x for x in v.replace(",", " ").split() if x)
                    elif k in ("fsync", "autostage"):
                        core[k] = _parse_bool(v, f"{where} [core] {k}")
                    else:
                        core[k] = v
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
    try:
        for name, entry in remotes.items():
            if "url" not in entry:
                raise ConfigError(f'remote "{name}" has no url', f"run `dvx remote add {name} URL`")
        return RepoConfig(
            core=CoreConfig.model_validate(core),
            chunker=ChunkerConfig.model_validate(chunker),
            remotes={n: RemoteConfig.model_validate(e) for n, e in remotes.items()},
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{shared_path}: {loc}: {first['msg']}", "fix the config file") from None


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
