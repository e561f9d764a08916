"""Histograms and images in runs (protocols/runs.md §4.1): the spec's vectors, and real
runs in real git repositories, checked with the git CLI."""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import dvx
import dvx.runs as dr
from dvx.repo import Repository
from dvx.runs.catalog import find_run, read_history
from dvx.runs.media import Histogram, Image, MediaStore, read_media
from tests.conftest import VECTORS, git, write
from tests.test_runs import child, record_at, runs_cli, wait_line

MEDIA_VECTORS = json.loads((VECTORS / "runs_media.json").read_text())


@pytest.fixture
def code_repo(repo_dir: Path) -> Path:
    write(repo_dir / "train.py", "print('train')\n")
    git("add", "-A", cwd=repo_dir)
    git("commit", "-qm", "code", cwd=repo_dir)
    return repo_dir


@pytest.fixture(autouse=True)
def _no_leftover_run():
    yield
    run = dr.current()
    if run is not None:
        run.finish()


def _obj(case: dict) -> Histogram | Image:
    if "counts" in case:
        return dvx.Histogram(counts=case["counts"], edges=case["edges"])
    if "values" in case:
        return dvx.Histogram([float(v) for v in case["values"]], bins=case["bins"])
    return dvx.Image(np.array(case["pixels"], dtype=case["dtype"]), caption=case["caption"])


@pytest.mark.parametrize("case", MEDIA_VECTORS["cases"], ids=lambda c: c["what"])
def test_vectors(case: dict, tmp_path: Path) -> None:
    obj = _obj(case)
    data = obj.encode()
    expected = case["bytes"].encode() if "bytes" in case else bytes.fromhex(case["bytes_hex"])
    assert data == expected
    assert MEDIA_VECTORS["kinds"]["histogram" if isinstance(obj, Histogram) else "image"] == obj.KIND
    store = MediaStore(str(tmp_path / "media"))
    assert store(obj) == case["text"]
    assert (tmp_path / "media" / case["file"]).read_bytes() == expected


def test_histogram_without_numpy_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    values = [0.1, 0.2, 0.25, 0.9, 3.0, -1.5, float("nan"), 2.0, 2.0]
    with_np = Histogram(values, bins=7)
    monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy now fails
    without = Histogram(values, bins=7)
    assert without.counts == with_np.counts and without.nonfinite == with_np.nonfinite == 1
    assert all(math.isclose(a, b, abs_tol=1e-12) for a, b in zip(without.edges, with_np.edges, strict=True))


@pytest.mark.parametrize("bad", [
    lambda: Histogram(counts=[1, 2], edges=[0.0, 1.0]),
    lambda: Histogram(counts=[1], edges=[1.0, 0.0]),
    lambda: Histogram(counts=[-1], edges=[0.0, 1.0]),
    lambda: Histogram(counts=[1], edges=[0.0, float("inf")]),
    lambda: Histogram([1.0], bins=0),
    lambda: Histogram(),
    lambda: Image(np.zeros((2, 2, 2), np.uint8)),
    lambda: Image(np.zeros((0, 3), np.uint8)),
])
def test_bad_media_is_refused_when_made(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        bad()


def test_image_shapes_and_ranges() -> None:
    chw = np.zeros((3, 4, 5), np.float32)
    img = Image(chw)
    assert (img.width, img.height) == (5, 4)
    assert Image(np.full((2, 2), 300.0)).encode() == Image(np.full((2, 2), 255, np.uint8)).encode()
    a = np.zeros((2, 2), np.uint8)
    img = Image(a)
    a[:] = 9  # the caller's array changes after log(): the image does not
    assert img.encode() == Image(np.zeros((2, 2), np.uint8)).encode()


def test_log_media_commits_and_reads_back(code_repo: Path) -> None:
    (code_repo / "sample.jpg").write_bytes(b"\xff\xd8\xff\xe0fake jpeg bytes")
    weights = np.random.default_rng(0).normal(size=1000)
    same = np.full((8, 8, 3), 200, np.uint8)
    with dr.init(project="m", capture_output=False) as run:
        for step in range(3):
            run.log({"loss": 1.0 / (step + 1), "w": dvx.Histogram(weights * (step + 1), bins=16),
                     "img": dvx.Image(same, caption=f"step {step}")}, step=step)
        run.log({"grads": weights[:10], "photo": dvx.Image(str(code_repo / "sample.jpg"))}, step=3)
        run.flush()
        with Repository(str(code_repo)) as repo:
            live = read_media(repo, find_run(repo, run.id), "img")
        assert [p["value"].caption for p in live] == ["step 0", "step 1", "step 2"]
    rec = record_at(code_repo, run.ref)
    assert rec["files"]["media"] == "media.dvx"
    tree = git("ls-tree", "--name-only", f"{run.ref}:.dvx-run", cwd=code_repo).split()
    assert "media.dvx" in tree and "metrics.dvx" in tree
    pointer = git("show", f"{run.ref}:.dvx-run/media.dvx", cwd=code_repo)
    assert "kind: tree" in pointer and "files: 6" in pointer  # 3 histograms + grads + 1 image + jpeg
    hist = rec["history"]["keys"]["w"]
    assert hist["count"] == 3 and hist["min"] is None and hist["last_step"] == 2
    with Repository(str(code_repo)) as repo:
        _check_committed(code_repo, repo, run.id, weights, same)


def _check_committed(code_repo: Path, repo: Repository, run_id: str, weights: np.ndarray,
                     same: np.ndarray) -> None:
    found = read_media(repo, find_run(repo, run_id))
    by_key: dict[str, list] = {}
    for p in found:
        by_key.setdefault(p["key"], []).append(p)
    assert [p["step"] for p in by_key["w"]] == [0, 1, 2]
    assert by_key["w"][2]["value"] == dvx.Histogram(weights * 3, bins=16)
    assert sum(by_key["grads"][0]["value"].counts) == 10  # an array logs as its histogram
    imgs = by_key["img"]
    assert [i["value"].caption for i in imgs] == ["step 0", "step 1", "step 2"]
    assert imgs[0]["value"].data == dvx.Image(same).encode() and imgs[0]["value"].width == 8
    photo = by_key["photo"][0]["value"]
    assert photo.format == "jpeg" and photo.data == (code_repo / "sample.jpg").read_bytes()
    table = read_history(repo, find_run(repo, run_id))
    kinds = dict(zip(table["key"].to_pylist(), table["kind"].to_pylist(), strict=True))
    assert kinds == {"loss": 0, "w": 4, "img": 5, "grads": 4, "photo": 5}
    git("fsck", "--strict", cwd=code_repo)
    from dvx.api import fsck

    assert fsck(repo=str(code_repo)).ok


def test_unsupported_values_still_warn_once(code_repo: Path) -> None:
    with dr.init(capture_output=False) as run, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.log({"x": object(), "ok": 1.0})
        run.log({"x": object(), "ok": 2.0})
    assert len([w for w in caught if "'x'" in str(w.message)]) == 1
    assert record_at(code_repo, run.ref)["history"]["keys"]["ok"]["count"] == 2


def test_resume_keeps_earlier_media(code_repo: Path) -> None:
    with dr.init(id="med1", capture_output=False) as run:
        run.log({"h": dvx.Histogram([1.0, 2.0])})
    with dr.init(id="med1", resume=True, capture_output=False) as run:
        run.log({"h": dvx.Histogram([5.0, 6.0, 7.0])})
    with Repository(str(code_repo)) as repo:
        found = read_media(repo, find_run(repo, "med1"), "h")
    assert [(p["step"], p["seq"], sum(p["value"].counts)) for p in found] == [(0, 0, 2), (1, 1, 3)]


MEDIA_LOGGER = """
import sys, numpy as np, dvx, dvx.runs as dr
run = dr.init(capture_output=False, system_metrics=False)
for i in range(5):
    run.log({"img": dvx.Image(np.full((4, 4), i * 10, np.uint8)), "loss": float(i)}, step=i)
run.flush()
print("flushed", flush=True)
import time; time.sleep(60)
"""


def test_kill_9_keeps_flushed_media(code_repo: Path) -> None:
    proc = child(MEDIA_LOGGER, code_repo)
    wait_line(proc, "flushed")
    proc.kill()
    proc.wait(30)
    (listed,) = json.loads(runs_cli("list", "--json", cwd=code_repo).stdout)
    assert listed["state"] == "crashed"
    with Repository(str(code_repo)) as repo:
        found = read_media(repo, find_run(repo, listed["id"]), "img")
    assert [p["value"].data for p in found] == [Image(np.full((4, 4), i * 10, np.uint8)).encode()
                                                for i in range(5)]


def test_pillow_round_trip_when_installed() -> None:
    pytest.importorskip("PIL")
    a = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    assert np.array_equal(Image(a).to_numpy(), a)
    from PIL import Image as PILImage

    assert Image(PILImage.fromarray(a)).encode() == Image(a).encode()


def test_media_does_not_import_heavy_modules() -> None:
    code = "import sys, dvx; dvx.Histogram(counts=[1], edges=[0, 1]); print('pyarrow' in sys.modules)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent)))
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("vals", [
    [1.0, 2.0, float("nan"), 3.0], [float("nan")] * 3, [1, 2, 1 << 60], [True, False], ["a", "b"],
    [1.0, "x", 2, float("inf"), float("-inf")], ["x", 1.5], [dvx.Histogram([1.0]), 2.0],
])
def test_one_key_statistics_match_the_grouped_ones(vals: list, tmp_path: Path) -> None:
    """A batch of one metric takes a faster path in batch_stats (finish() speed): it
    must give what the grouped path gives."""
    from dvx.runs.segments import batch_stats, calls_to_batch

    flat: list = []
    for i, v in enumerate(vals):
        flat.extend((i * 7 % 5, 1.0 + i, {"k": v}))
    media = MediaStore(str(tmp_path))
    fast = batch_stats(calls_to_batch(flat, 10, media))
    grouped = batch_stats(calls_to_batch([*flat, 99, 9.0, {"other": 1.0}], 10, media))
    del grouped["other"]
    assert json.dumps(fast, sort_keys=True) == json.dumps(grouped, sort_keys=True)


def test_media_of_a_python_child_under_dvx_run(code_repo: Path) -> None:
    """`dvx run -- python train.py`: the child joins the run; its media are committed
    with it, and its points are numbered before those of the parent."""
    import subprocess
    import textwrap

    write(code_repo / "child.py", textwrap.dedent("""
        import numpy as np, dvx
        run = dvx.init()
        for i in range(3):
            run.log({"img": dvx.Image(np.full((2, 3), i, np.uint8)), "h": dvx.Histogram([i, i + 1.0])}, step=i)
        run.finish()
    """))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.run([sys.executable, "-m", "dvx", "run", "--json", "--", sys.executable, "child.py"],
                          cwd=code_repo, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    run_id = json.loads(out[0 if out.startswith("{") else out.rindex("\n{") + 1:])["id"]  # the --json report
    with Repository(str(code_repo)) as repo:
        found = read_media(repo, find_run(repo, run_id))
    assert [(p["key"], p["step"]) for p in found] == [("img", 0), ("h", 0), ("img", 1), ("h", 1),
                                                       ("img", 2), ("h", 2)]
    assert found[4]["value"].data == Image(np.full((2, 3), 2, np.uint8)).encode()
    git("fsck", "--strict", cwd=code_repo)
