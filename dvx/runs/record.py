"""The run record, ``run.json`` (``protocols/runs.md`` §3): canonical bytes, the
version gate, run ids, JSON-safe config values, the environment of a run, and the
summary rules of §5."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from typing import Any

from dvx.errors import DvxError, FormatVersionError

RUN_FORMAT = 1
RUN_DIR = ".dvx-run"  # inside the git tree of a run commit, at the DVX root
REF_PREFIX = "refs/dvx/runs/"
STATES = ("running", "finished", "failed", "crashed")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class RunError(DvxError):
    """A run cannot be created, resumed, read or committed."""


def new_run_id() -> str:
    import secrets

    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def check_run_id(run_id: object) -> str:
    if not isinstance(run_id, str) or not _ID_RE.match(run_id):
        raise RunError(f"invalid run id {run_id!r}",
                       "use 1-64 letters, digits, '_' or '-', starting with a letter or digit")
    return run_id


# -- canonical JSON -----------------------------------------------------------------------
def _to_json(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return {"$float": "nan" if v != v else ("inf" if v > 0 else "-inf")}
    if isinstance(v, dict):
        return {k: _to_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_to_json(x) for x in v]
    return v


_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _from_json(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and "$float" in obj and obj["$float"] in _SPECIAL:
        return _SPECIAL[obj["$float"]]
    return obj


def encode_record(record: dict[str, Any]) -> bytes:
    """Canonical bytes of a record (runs.md §3)."""
    return (json.dumps(_to_json(record), sort_keys=True, indent=2, ensure_ascii=False,
                       allow_nan=False) + "\n").encode("utf-8")


def decode_record(data: bytes, where: str) -> dict[str, Any]:
    """Parse a record, refusing a format version this DVX does not read."""
    try:
        record = json.loads(data.decode("utf-8"), object_hook=_from_json)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RunError(f"{where} is not a valid run record: {exc}", "run `dvx fsck`") from None
    if not isinstance(record, dict) or "dvx_run" not in record:
        raise RunError(f"{where} is not a run record (no dvx_run version)")
    if record["dvx_run"] != RUN_FORMAT:
        raise FormatVersionError(f"{where} uses run format {record['dvx_run']!r}; this DVX reads "
                                 f"format {RUN_FORMAT}", "upgrade dvx (pip install -U dvx)")
    return record


# -- JSON-safe values (config, summary) ------------------------------------------------------
class Unsupported(Exception):
    """A value the record cannot hold; ``path`` names where."""

    def __init__(self, path: str, value: object) -> None:
        super().__init__(path)
        self.path = path
        self.kind = type(value).__name__


def scalar(v: Any) -> Any:
    """A plain Python scalar for ``v`` (numpy/torch scalars through ``item()``), or
    raise ``TypeError``."""
    t = type(v)
    if t is float or t is int or t is bool or t is str:
        return v
    if isinstance(v, (bool, int, float, str)):  # subclasses (IntEnum, numpy.float64)
        return bool(v) if isinstance(v, bool) else (
            str(v) if isinstance(v, str) else (int(v) if isinstance(v, int) else float(v)))
    item = getattr(v, "item", None)
    if item is not None and getattr(v, "ndim", 0) == 0:
        try:
            out = item()
        except Exception:  # a tensor with more than one element, a device error...
            raise TypeError(t.__name__) from None
        if type(out) in (float, int, bool, str):
            return out
    raise TypeError(t.__name__)


def json_value(v: Any, path: str) -> Any:
    """``v`` as JSON-able data (dict, list, str, int, float, bool, None)."""
    if v is None or type(v) in (str, int, float, bool):
        return v
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise Unsupported(f"{path}[{k!r}]" if path else repr(k), k)
            out[k] = json_value(x, f"{path}.{k}" if path else k)
        return out
    if isinstance(v, (list, tuple)):
        return [json_value(x, f"{path}[{i}]") for i, x in enumerate(v)]
    import dataclasses

    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return json_value(dataclasses.asdict(v), path)
    if type(v).__name__ == "Namespace" and hasattr(v, "__dict__"):  # argparse
        return json_value(vars(v), path)
    try:
        return scalar(v)
    except TypeError:
        pass
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    raise Unsupported(path, v)


# -- environment --------------------------------------------------------------------------
def environment() -> dict[str, Any]:
    import getpass
    import platform
    import socket
    from importlib import metadata

    packages: dict[str, str] = {}
    try:
        for dist in metadata.distributions():
            name = dist.metadata["Name"] if dist.metadata else None
            if name:
                packages.setdefault(name, dist.version or "")
    except Exception:  # a broken site-packages entry must not stop a run
        pass
    try:
        user = getpass.getuser()
    except Exception:
        user = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "user": user,
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "argv": list(sys.argv),
        "executable": sys.executable,
        "packages": dict(sorted(packages.items(), key=lambda kv: kv[0].lower())),
    }


# -- summary (runs.md §5) -------------------------------------------------------------------
SUMMARY_RULES = ("last", "min", "max", "mean", "best")


def metric_rule(metrics: dict[str, dict[str, Any]], key: str) -> tuple[str, str | None]:
    spec = metrics.get(key)
    if spec is None:
        for name, s in metrics.items():
            if name.endswith("*") and key.startswith(name[:-1]):
                spec = s
                break
    if spec is None:
        return "last", None
    return spec.get("summary") or "last", spec.get("goal")


def point_value(kind: int, value: float | None, text: str | None) -> Any:
    """The Python value of a point (runs.md §4)."""
    if kind == 0:
        return value
    if kind == 1:
        return int(text) if text is not None else int(value)  # type: ignore[arg-type]
    if kind == 2:
        return bool(value)
    return text


def summarize(stats: dict[str, dict[str, Any]], metrics: dict[str, dict[str, Any]],
              explicit: dict[str, Any]) -> dict[str, Any]:
    """The summary from per-key statistics (``history.keys``) and the explicit values."""
    out: dict[str, Any] = {}
    for key, s in stats.items():
        rule, goal = metric_rule(metrics, key)
        if rule == "best":
            rule = "max" if goal == "maximize" else "min"
        value = s.get(rule) if rule in ("min", "max", "mean") else s.get("last")
        if rule != "last" and value is None:
            value = s.get("last")  # no numeric value: fall back to the last one
        out[key] = value
    out.update(explicit)
    return out
