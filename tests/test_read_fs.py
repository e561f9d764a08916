"""The ``dvx://`` fsspec filesystem (issue #12 item 2, protocols/read.md §1-2)."""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

import dvx
from dvx.access.fs import DVXFileSystem
from dvx.access.source import forget_sources
from dvx.errors import ReadOnlyError
from tests.conftest import git, pseudo_random, write

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DVX_CACHE_DIR", str(tmp_path / "user-cache"))
    forget_sources()
    fsspec.register_implementation("dvx", DVXFileSystem, clobber=True)  # whatever is installed
    DVXFileSystem.clear_instance_cache()
    yield
    forget_sources()


@pytest.fixture
def project(repo_dir: Path) -> Path:
    write(repo_dir / "data" / "train.csv", "a,b\n1,2\n3,4\n")
    write(repo_dir / "data" / "img" / "x.bin", pseudo_random(600_000, 3))
    write(repo_dir / "data" / "img" / "y.bin", b"y" * 10)
    write(repo_dir / "models" / "m.pt", b"m1" * 100)
    dvx.add(["data", "models/m.pt"])
    dvx.commit("v1")
    git("tag", "v1", cwd=repo_dir)
    write(repo_dir / "data" / "train.csv", "a,b\n5,6\n")
    dvx.add(["data"])
    dvx.commit("v2")
    return repo_dir


def test_the_entry_point_is_declared() -> None:
    text = (ROOT / "pyproject.toml").read_text()  # (tomllib is 3.11+; DVX supports 3.10)
    section = text.split('[project.entry-points."fsspec.specs"]\n', 1)[1].split("\n[", 1)[0]
    assert 'dvx = "dvx.access.fs:DVXFileSystem"' in section.splitlines()
    assert '"dvx.access"' in text.split("[tool.setuptools]", 1)[1].split("\n[", 1)[0]


def test_fsspec_finds_the_protocol_through_the_installed_entry_point() -> None:
    eps = [e for e in importlib.metadata.entry_points(group="fsspec.specs") if e.name == "dvx"]
    if not eps:
        if os.environ.get("DVX_REQUIRE_EMULATORS"):  # the test command installs afresh: it must be there
            pytest.fail("the dvx fsspec entry point is not installed")
        pytest.skip("the installed dvx predates its fsspec entry point: reinstall (pip install -e .)")
    from fsspec.registry import _registry

    _registry.pop("dvx", None)  # forget the fixture's registration: find it as users do
    assert fsspec.get_filesystem_class("dvx") is DVXFileSystem


def test_listing_info_find_glob(project: Path) -> None:
    fs = DVXFileSystem(repo=str(project), rev="v1")
    assert fs.ls("", detail=False) == ["data", "models"]
    assert fs.ls("/", detail=False) == ["data", "models"]
    assert fs.ls("models", detail=False) == ["models/m.pt"]
    assert fs.ls("data", detail=False) == ["data/img", "data/train.csv"]
    info = fs.info("data/img/x.bin")
    assert (info["type"], info["size"], info["tracked"]) == ("file", 600_000, "data")
    assert fs.info("data")["type"] == "directory" and fs.info("data")["dvx_kind"] == "tree"
    assert fs.info("models")["type"] == "directory" and fs.info("models")["dvx_kind"] == "directory"
    assert fs.isdir("data/img") and fs.isfile("data/train.csv") and not fs.exists("data/nope")
    assert fs.find("") == ["data/img/x.bin", "data/img/y.bin", "data/train.csv", "models/m.pt"]
    assert fs.glob("data/**/*.bin") == ["data/img/x.bin", "data/img/y.bin"]
    assert fs.glob("dvx://data/*.csv") == ["data/train.csv"]
    assert fs.du("data") == 600_000 + 10 + 12
    with pytest.raises(FileNotFoundError):
        fs.info("data/nope")
    with pytest.raises(FileNotFoundError):
        fs.ls("nope")
    # rev None: the work tree's pointers
    assert DVXFileSystem(repo=str(project)).cat_file("data/train.csv") == b"a,b\n5,6\n"


def test_cat_file_ranges_and_open(project: Path) -> None:
    data = pseudo_random(600_000, 3)
    fs = DVXFileSystem(repo=str(project), rev="v1")
    assert fs.cat_file("data/train.csv") == b"a,b\n1,2\n3,4\n"
    assert fs.cat_file("data/img/x.bin", 70_000, 200_000) == data[70_000:200_000]
    assert fs.cat_file("data/img/x.bin", -10) == data[-10:]
    assert fs.cat_file("data/img/x.bin", 10, -10) == data[10:-10]
    assert fs.cat_file("data/img/x.bin", 599_990, 700_000) == data[599_990:]
    assert fs.cat_file("data/img/x.bin", 5, 5) == b""
    got = fs.cat_ranges(["data/img/x.bin", "data/train.csv", "data/img/x.bin"],
                        [0, 2, 300_000], [5, 5, 300_100])
    assert got == [data[:5], b"b\n1", data[300_000:300_100]]
    with fs.open("data/img/x.bin", block_size=65_536) as f:
        assert f.size == 600_000
        f.seek(123_457)
        assert f.read(100_000) == data[123_457:223_457]
        f.seek(-3, 2)
        assert f.read() == data[-3:]
    with pytest.raises(IsADirectoryError):
        fs.cat_file("data/img")
    with pytest.raises(IsADirectoryError):
        fs.open("data")


def test_fsspec_open_with_url_options(project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # the repository comes from repo=, not the cwd
    with fsspec.open("dvx://data/train.csv", repo=str(project), rev="v1") as f:
        assert f.read() == b"a,b\n1,2\n3,4\n"
    with fsspec.open("dvx://data/train.csv?rev=v1", "rt", repo=str(project)) as f:
        assert f.read() == "a,b\n1,2\n3,4\n"
    with fsspec.open("dvx://data/train.csv", repo=str(project)) as f:  # the work tree
        assert f.read() == b"a,b\n5,6\n"
    fs, path = fsspec.core.url_to_fs("dvx://models/m.pt?rev=v1", repo=str(project))
    assert isinstance(fs, DVXFileSystem) and fs.rev == "v1" and path == "models/m.pt"


def test_writes_are_refused(project: Path) -> None:
    fs = DVXFileSystem(repo=str(project), rev="v1")
    attempts = [lambda: fs.open("data/train.csv", "wb"), lambda: fs.open("new", "ab"),
                lambda: fs.pipe_file("x", b"1"), lambda: fs.rm("data/train.csv"),
                lambda: fs.mkdir("d"), lambda: fs.makedirs("d/e"), lambda: fs.touch("t"),
                lambda: fs.put_file(__file__, "p"), lambda: fs.mv("data/train.csv", "z"),
                lambda: fs.cp_file("data/train.csv", "z"), lambda: fs.rmdir("data")]
    for attempt in attempts:
        with pytest.raises(ReadOnlyError, match="read-only") as e:
            attempt()
        assert isinstance(e.value, PermissionError)
    with pytest.raises(PermissionError), fsspec.open("dvx://data/new.csv", "wb", repo=str(project)) as f:
        f.write(b"x")
    assert fs.cat_file("data/train.csv") == b"a,b\n1,2\n3,4\n"  # nothing changed


def test_pyarrow_reads_parquet_through_the_filesystem(repo_dir: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"x": list(range(50_000)), "y": [f"row {i}" for i in range(50_000)]})
    (repo_dir / "data").mkdir()
    pq.write_table(table, repo_dir / "data" / "x.parquet", row_group_size=10_000)
    dvx.add(["data"])
    dvx.commit("v1")
    git("tag", "v1", cwd=repo_dir)
    pq.write_table(table.slice(0, 10), repo_dir / "data" / "x.parquet")
    dvx.add(["data"])
    dvx.commit("v2")
    fs = DVXFileSystem(repo=str(repo_dir), rev="v1")
    assert pq.read_table("data/x.parquet", filesystem=fs).equals(table)
    assert pq.read_table("data/x.parquet", filesystem=DVXFileSystem(repo=str(repo_dir))).num_rows == 10
    one = pq.ParquetFile("data/x.parquet", filesystem=fs).read_row_group(3)
    assert one.column("x")[0].as_py() == 30_000
    import pyarrow.dataset as ds

    assert ds.dataset("data", filesystem=fs, format="parquet").count_rows() == 50_000


def test_pandas_storage_options(project: Path) -> None:
    pd = pytest.importorskip("pandas", reason="pandas is not installed in this environment")
    df = pd.read_csv("dvx://data/train.csv", storage_options={"repo": str(project), "rev": "v1"})
    assert list(df["a"]) == [1, 3]
    df2 = pd.read_csv("dvx://data/train.csv?rev=v1", storage_options={"repo": str(project)})
    assert list(df2["b"]) == [2, 4]
