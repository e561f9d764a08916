"""Artifacts: named, typed sequences of versions of tracked data (``protocols/artifacts.md``).

One git ref per artifact, ``refs/dvx/artifacts/<NAME>``; each change is a commit whose
tree holds ``artifact.json`` and the pointer of each version. Modules: ``names`` (names,
aliases, references), ``record`` (artifact.json), ``read`` (list / get / resolve),
``write`` (versions, aliases, retention policy: compare-and-swap commits),
``retention`` (what gc drops), ``merge`` and ``travel`` (push / fetch), ``get``
(materialise a version), ``view`` (``dvx.Api().artifact``).
"""

from __future__ import annotations

from dvx.artifacts.names import REF_PREFIX, ArtifactError, Reference, parse_reference
from dvx.artifacts.read import get_artifact, list_artifacts, resolve
from dvx.artifacts.record import Artifact, ArtifactVersion, Retention

__all__ = ["REF_PREFIX", "Artifact", "ArtifactError", "ArtifactVersion", "Reference", "Retention",
           "get_artifact", "list_artifacts", "parse_reference", "resolve"]
