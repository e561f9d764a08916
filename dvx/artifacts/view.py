"""``dvx.Api().artifact("model:best")``: one artifact version, as wandb's
``api.artifact(...)`` returns it (``docs/artifacts.md``).

``logged_by()`` is the run recorded in the version; ``used_by()`` the runs whose
record lists the version's content id among its inputs (found through the run index).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dvx.artifacts.record import Artifact, ArtifactVersion

if TYPE_CHECKING:
    from dvx.runs.api import Api, Run


class ArtifactView:
    """One version of an artifact (read-only)."""

    def __init__(self, api: Api, artifact: Artifact, version: ArtifactVersion) -> None:
        self._api = api
        self._artifact = artifact.with_aliases()
        self._version = self._artifact.versions[version.version]

    def __repr__(self) -> str:
        return f"<dvx Artifact {self.qualified_name} {self.type} {self.id[:12]}>"

    @property
    def name(self) -> str:
        return self._artifact.name

    @property
    def qualified_name(self) -> str:
        """``NAME:vN``."""
        return self._version.ref

    @property
    def type(self) -> str:
        return self._artifact.type

    @property
    def version(self) -> str:
        """``vN`` (as wandb spells it)."""
        return f"v{self._version.version}"

    @property
    def number(self) -> int:
        return self._version.version

    @property
    def id(self) -> str:
        """The content id (the root id of the version's pointer)."""
        return self._version.id

    @property
    def aliases(self) -> list[str]:
        """The aliases that name this version now."""
        return list(self._version.aliases)

    @property
    def size(self) -> int:
        return self._version.size

    @property
    def path(self) -> str:
        """The repository path the version was logged from."""
        return self._version.path

    @property
    def created_at(self) -> str:
        return self._version.created

    @property
    def record(self) -> ArtifactVersion:
        return self._version

    def versions(self) -> list[ArtifactView]:
        """Every version of the artifact that was not dropped, oldest first."""
        return [ArtifactView(self._api, self._artifact, v) for v in self._artifact.live]

    def logged_by(self) -> Run | None:
        """The run that logged this version (None: added with ``dvx artifacts add``, or
        the run is not in this repository)."""
        from dvx.errors import DvxError

        if not self._version.run:
            return None
        try:
            run = self._api.run(self._version.run)
        except DvxError:
            return None
        return run if run.id == self._version.run else None

    def used_by(self) -> list[Run]:
        """Runs whose inputs hold this version's content (under any path or name)."""
        return [r for r in self._api.runs() if any(
            isinstance(e, dict) and e.get("id") == self.id for e in r.inputs)]

    def download(self, root: str | None = None, *, force: bool = False) -> str:
        """Materialise the version (``dvx artifacts get``); returns the path."""
        from dvx.artifacts.get import get_version

        return get_version(self._api.repo, self.qualified_name, root, force=force).path

    def to_json(self) -> dict[str, Any]:
        return {**self._version.to_json(), "type": self.type}
