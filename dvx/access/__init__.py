"""The read API: any version of any tracked file, without a checkout (issue #12).

``dvx.open`` / ``dvx.read`` / ``dvx.info`` (:mod:`dvx.access.files`), the ``dvx://``
fsspec filesystem (:mod:`dvx.access.fs`), ``dvx get`` (:mod:`dvx.ops.get`). A
repository is opened once per process (:mod:`dvx.access.source`); one named by a git
URL is cloned once into the user cache (:mod:`dvx.access.clones`). Formats and rules:
``protocols/read.md``.
"""
