"""Node and edge kinds of the lineage graph (``protocols/lineage.md`` §2).

A node's key is ``<kind>:<id>``: ``data:<content id hex>``, ``run:<run id>``,
``commit:<40-hex sha>``. Edges point the way data flows (upstream -> downstream)."""

from __future__ import annotations

import re

DATA, RUN, COMMIT = 0, 1, 2
NODE_KINDS = ("data", "run", "commit")

USED, PRODUCED, COMMITTED_IN, DERIVED_FROM, CODE = 0, 1, 2, 3, 4
EDGE_KINDS = ("used", "produced", "committed-in", "derived-from", "code")
# edges a flow cycle is made of (a run that used what it, or its descendants, produced);
# derived-from cycles are ordinary (a path reverted to an earlier version)
FLOW_EDGES = (USED, PRODUCED)

HEX_ID = re.compile(r"^[0-9a-f]{64}\Z")
SHA = re.compile(r"^[0-9a-f]{40}\Z")


def node_key(kind: int, ident: str) -> str:
    return f"{NODE_KINDS[kind]}:{ident}"


def split_key(key: str) -> tuple[int, str]:
    name, _, ident = key.partition(":")
    return NODE_KINDS.index(name), ident


from dvx.errors import DvxError  # noqa: E402


class LineageError(DvxError):
    """A lineage query cannot be answered (unknown or ambiguous target, bad option)."""
