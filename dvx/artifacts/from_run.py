"""Artifact versions a run logs (``protocols/artifacts.md`` §5.1): when a run is
committed, each output it logged with a ``type`` (``run.log_artifact(path, name,
type, aliases)``) becomes a version of the artifact ``name`` (the run id recorded in
it), or re-logs the version that already has its content id.
"""

from __future__ import annotations

from typing import Any

from dvx.errors import DvxError
from dvx.repo import Repository


def log_run_outputs(repo: Repository, record: dict[str, Any], files: dict[str, bytes]) -> list[str]:
    """Add the versions of ``record``'s typed outputs (``files``: the run commit's files
    below ``.dvx-run/``). Returns one problem line per output that could not be logged
    (the run itself is committed either way)."""
    from dvx.artifacts.write import add_version
    from dvx.pointer import parse_pointer

    problems = []
    for entry in record.get("outputs") or []:
        if not isinstance(entry, dict) or not entry.get("type"):
            continue
        name = entry.get("name") or str(entry.get("path", "")).rsplit("/", 1)[-1]
        where = str(entry.get("pointer", ""))
        try:
            data = files.get(where.split("/", 1)[-1]) if where.startswith(".dvx-run/") else None
            if data is None:
                raise DvxError(f"its pointer {where!r} is not in the run")
            pointer = parse_pointer(data, f"run {record.get('id')}:{where}")
            add_version(repo, str(name), str(entry["type"]), pointer, str(entry["path"]),
                        aliases=[str(a) for a in entry.get("aliases") or []], run=str(record["id"]),
                        commit=(record.get("code") or {}).get("commit"))
        except DvxError as exc:
            problems.append(f"artifact {name!r} from {entry.get('path')!r}: {exc}")
    return problems
