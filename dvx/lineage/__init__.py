"""The lineage graph (``protocols/lineage.md``): which data, runs and commits made what.

Nodes are data versions (by content id, with every path and artifact version they
appear under), runs and commits; edges are ``used`` (data -> run), ``produced`` (run ->
data), ``committed-in`` (data -> the commit where it first appears at a path),
``derived-from`` (the version a path held -> the version that replaced it) and ``code``
(the code commit -> the run that ran on it). Everything comes from git: the commits of
every ref, the run records at ``refs/dvx/runs/*`` and the artifact refs. The local index
``.dvx/state/lineage/graph.dvxl`` (:mod:`dvx.lineage.store`) is a cache of that graph,
updated for new refs only and rebuilt when it is missing, damaged or stale.

Modules: ``model`` (node and edge kinds), ``refs`` (the refs and their signature),
``artifacts`` (reading artifact refs), ``build`` (git -> graph, incrementally),
``store`` (the index file), ``walk`` (closures), ``target`` (what a user names),
``graph`` (the result: nodes, edges, JSON/DOT/Mermaid), ``query`` (the entry point).
"""
