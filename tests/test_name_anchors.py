"""Names read from records, refs and config are checked by regular expressions; with
``re.match``, a pattern ending in ``$`` also accepts the name followed by a newline
(``$`` matches before a final ``\\n``). Each check must refuse ``NAME\\n``."""

from __future__ import annotations

from pathlib import Path

import pytest

import dvx
from dvx.errors import DvxError
from dvx.lineage.model import HEX_ID, SHA
from dvx.runs.record import check_run_id

HEX = "ab" * 32


@pytest.mark.parametrize("pattern, good", [(HEX_ID, HEX), (SHA, "ab" * 20)])
def test_lineage_ids(pattern, good: str) -> None:  # type: ignore[no-untyped-def]
    assert pattern.match(good) and not pattern.match(good + "\n")


def test_run_ids() -> None:
    check_run_id("abc")
    with pytest.raises(DvxError):
        check_run_id("abc\n")


def test_remote_names(repo_dir: Path) -> None:
    with pytest.raises(DvxError, match="invalid remote name"):
        dvx.remote_add("origin\n", str(repo_dir.parent / "remote"), repo=str(repo_dir))
    assert "origin" not in (repo_dir / ".dvx" / "config").read_text()


def test_lineage_targets_and_media_names() -> None:
    from dvx.lineage.target import _HEX, _VERSION
    from dvx.runs.media import _MEDIA_NAME
    from dvx.runs.segments import _NAME as SEGMENT

    assert _HEX.match("abcdef") and not _HEX.match("abcdef\n")
    assert _VERSION.match("v3") and not _VERSION.match("v3\n")
    assert _MEDIA_NAME.match(HEX + ".png") and not _MEDIA_NAME.match(HEX + ".png\n")
    assert SEGMENT.match("000001.arrows") and not SEGMENT.match("000001.arrows\n")
