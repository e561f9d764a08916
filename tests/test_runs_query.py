"""Querying runs (issue 10, items 7 and 8): the filter language and its dict form, the
local index (rebuilt when missing or stale, never trusted over git), ``dvx.Api``,
``history`` and the ``dvx runs list/diff/export`` commands, on real repositories with
runs recorded through ``dvx.init``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dvx
import dvx.runs as dr
from dvx.runs import index
from dvx.runs.api import Api as _Api
from dvx.runs.query import QueryError, from_dict, parse_filter, parse_order
from tests.conftest import git, run_dvx, write


class Api(_Api):
    """``dvx.runs.api.Api`` whose store files every test closes (pack fds are per process)."""

    made: list[_Api] = []

    def __init__(self, *args, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kw)
        Api.made.append(self)


@pytest.fixture(autouse=True)
def _close_apis():
    yield
    for api in Api.made:
        api.close()
    Api.made.clear()


# -- the language ---------------------------------------------------------------------------
def test_parse_tree_and_precedence() -> None:
    assert parse_filter("config.lr < 1e-3") == ("cmp", "config.lr", "<", 1e-3)
    assert parse_filter("name = 'x' or state = \"y\" and not id = 3") == (
        "or", [("cmp", "name", "=", "x"),
               ("and", [("cmp", "state", "=", "y"), ("not", ("cmp", "id", "=", 3))])])
    assert parse_filter('state in ("finished", "crashed")') == ("in", "state", ["finished", "crashed"], False)
    assert parse_filter("config.batch NOT IN (32, 64)") == ("in", "config.batch", [32, 64], True)
    assert parse_filter('tags contains "baseline"') == ("contains", "tags", "baseline")
    assert parse_filter('name ~ "^res"') == ("regex", "name", "^res")
    assert parse_filter('name !~ "^res"') == ("not", ("regex", "name", "^res"))
    assert parse_filter("config.flag == true") == ("cmp", "config.flag", "=", True)
    assert parse_filter("summary.x >= -2.5e+3") == ("cmp", "summary.x", ">=", -2500.0)
    assert parse_filter("  ") is None
    assert parse_order("-summary.acc, name") == [("summary.acc", True), ("name", False)]
    assert parse_filter("summary_metrics.acc > 1") == ("cmp", "summary.acc", ">", 1)


@pytest.mark.parametrize(("text", "message"), [
    ("config.lr <", "expected a value after '<' at column 12"),
    ("config.lr < 1e-3 and", "expected a field (config.*, summary.*, tags, name, ...) at column 21"),
    ("(config.lr < 1", "expected ')' at column 15"),
    ("config.lr 3", "expected an operator (= != < <= > >= ~ in contains) after 'config.lr' at column 11"),
    ("lr < 3", "unknown field 'lr' at column 1"),
    ("name = 'abc", "unterminated string starting at column 8"),
    ("name ~ '('", "invalid regular expression '('"),
    ("state in 'x'", "expected '(' and a list of values after 'in' at column 10"),
    ("config.a < 1 config.b < 2", "expected 'and', 'or' or the end at column 14"),
    ("name = $", "unexpected '$' at column 8"),
    ("name ~ 3", "expected a quoted regular expression after '~' at column 8"),
])
def test_parse_errors_name_the_column(text: str, message: str) -> None:
    with pytest.raises(QueryError) as exc:
        parse_filter(text)
    assert message in str(exc.value)
    assert exc.value.exit_code == 2


def test_dict_form() -> None:
    assert from_dict({"$or": [{"config.lr": {"$lt": 1e-3}}, {"tags": {"$in": ["baseline"]}}]}) == (
        "or", [("cmp", "config.lr", "<", 1e-3), ("in", "tags", ["baseline"], False)])
    assert from_dict({"state": "finished", "config.x": {"$gte": 1, "$ne": 3}}) == (
        "and", [("cmp", "state", "=", "finished"),
                ("and", [("cmp", "config.x", ">=", 1), ("cmp", "config.x", "!=", 3)])])
    assert from_dict({"$not": {"name": {"$regex": "^a"}}}) == ("not", ("regex", "name", "^a"))
    assert from_dict({"summary.acc": {"$exists": False}}) == ("exists", "summary.acc", False)
    assert from_dict({"config.b": {"$nin": [1, 2]}}) == ("in", "config.b", [1, 2], True)
    assert from_dict({}) is None
    for bad, msg in [({"$xor": []}, "unknown operator '$xor'"),
                     ({"config.a": {"$lt": [1]}}, "must be a number"),
                     ({"config.a": {"$foo": 1}}, "unknown operator '$foo' for config.a"),
                     ({"$or": []}, "$or takes a non-empty list"), ({"nope": 1}, "unknown field 'nope'"),
                     ([1], "a filter must be a dict or a string")]:
        with pytest.raises(QueryError, match=msg.replace("$", r"\$").replace("(", r"\(")):
            from_dict(bad)


# -- runs in a real repository --------------------------------------------------------------------
@pytest.fixture
def runs_repo(repo_dir: Path) -> tuple[Path, dict[str, str]]:
    write(repo_dir / "train.py", "print('train')\n")
    git("add", "-A", cwd=repo_dir)
    git("commit", "-qm", "code", cwd=repo_dir)
    specs = [
        ("resnet-a", {"lr": 1e-4, "opt": {"name": "adam"}, "layers": [1, 2]}, ["baseline"], {"acc": 0.95}),
        ("resnet-b", {"lr": 1e-2, "opt": {"name": "sgd"}}, [], {"acc": 0.80}),
        ("vit", {"lr": 5e-4, "opt": {"name": "adam"}}, ["baseline", "x"], {"acc": 0.85}),
        ("resnet-c", {"lr": 1e-5, "opt": "none"}, [], {"acc": math.nan}),
        ("resnet-d", {"lr": "auto"}, ["sweep"], {}),
    ]
    ids: dict[str, str] = {}
    for i, (name, config, tags, summary) in enumerate(specs):
        with dr.init(project="p", name=name, config=config, tags=tags, system_metrics=False,
                     capture_output=False) as run:
            for step in range(5):
                run.log({"loss": 1.0 / (step + 1 + i)}, step=step)
            for k, v in summary.items():
                run.summary[k] = v
        ids[name] = run.id
    return repo_dir, ids


def names(runs: list) -> list[str]:  # type: ignore[type-arg]
    return [r.name for r in runs]


def test_filters_and_sorting(runs_repo: tuple[Path, dict[str, str]]) -> None:
    repo, ids = runs_repo
    assert dvx.Api is _Api
    api = Api(repo=str(repo))
    example = 'config.lr < 1e-3 and (summary.acc >= 0.9 or tags contains "baseline") and name ~ "^resnet"'
    assert names(api.runs(example)) == ["resnet-a"]
    as_dict = {"$and": [{"config.lr": {"$lt": 1e-3}},
                        {"$or": [{"summary.acc": {"$gte": 0.9}}, {"tags": {"$in": ["baseline"]}}]},
                        {"name": {"$regex": "^resnet"}}]}
    assert names(api.runs(as_dict)) == ["resnet-a"]
    assert set(names(api.runs({"$or": [{"config.lr": {"$lt": 1e-3}}, {"tags": {"$in": ["baseline"]}}]}))) == {
        "resnet-a", "vit", "resnet-c"}
    # newest first by default; sort descending with '-', missing (and NaN) last, several keys
    assert names(api.runs()) == ["resnet-d", "resnet-c", "vit", "resnet-b", "resnet-a"]
    assert names(api.runs(order="-summary.acc"))[:3] == ["resnet-a", "vit", "resnet-b"]
    assert names(api.runs(order="summary.acc"))[:3] == ["resnet-b", "vit", "resnet-a"]
    assert names(api.runs(order="config.opt.name,-name")) == [
        "vit", "resnet-a", "resnet-b", "resnet-d", "resnet-c"]
    assert names(api.runs(order="-summary.acc", limit=2)) == ["resnet-a", "vit"]
    # nested config, strings vs numbers, lists, bools, missing fields never match
    assert set(names(api.runs('config.opt.name = "adam"'))) == {"resnet-a", "vit"}
    assert names(api.runs('config.lr = "auto"')) == ["resnet-d"]
    assert "resnet-d" not in names(api.runs("config.lr < 1"))
    assert names(api.runs("config.layers contains 2")) == ["resnet-a"]
    assert names(api.runs("config.layers = 1")) == ["resnet-a"]
    assert api.runs("config.nope = 1") == [] and api.runs("summary.nope != 1") == []
    assert set(names(api.runs("not summary.nope = 1"))) == set(ids)
    assert set(names(api.runs("summary.acc != 0.8"))) == {"resnet-a", "vit", "resnet-c"}
    assert set(names(api.runs({"summary.acc": {"$exists": False}}))) == {"resnet-d"}
    assert set(names(api.runs('state in ("finished", "crashed") and exit_code = 0'))) == set(ids)
    assert names(api.runs('tags = "sweep"')) == ["resnet-d"]
    assert set(names(api.runs('tags not in ("baseline")'))) == {"resnet-b", "resnet-c", "resnet-d"}
    assert names(api.runs('name contains "vi"')) == ["vit"]
    assert len(api.runs('start_time > "2000-01-01" and end_time < "2100-01-01"')) == 5
    assert names(api.runs(f'id = "{ids["vit"]}"')) == ["vit"]
    with pytest.raises(QueryError, match="unknown field"):
        api.runs(order="-bogus")


def test_run_object_and_history(runs_repo: tuple[Path, dict[str, str]]) -> None:
    repo, ids = runs_repo
    write(repo / "data" / "x.txt", "hello\n")
    with dr.init(name="hist", config={"lr": 0.1}, tags=["t"], system_metrics=True, capture_output=False) as run:
        run.use_artifact("data")
        run.log({"loss": 3.0, "acc": 0.1}, step=0)
        run.log({"loss": 2.0}, step=1)
        run.log({"loss": 2.5, "acc": 0.2, "note": "restart"}, step=0)  # a step again: kept, ordered by step
        run.log({"count": 7, "flag": True}, step=2)
        write(repo / "model.bin", "weights")
        run.log_artifact("model.bin", type="model")
    api = Api(str(repo))
    r = api.run(run.id[:5])
    assert (r.id, r.name, r.state, r.tags, r.config) == (run.id, "hist", "finished", ["t"], {"lr": 0.1})
    assert r.commit == git("rev-parse", f"refs/dvx/runs/{run.id}", cwd=repo).strip()
    assert r.summary["loss"] == 2.5 and r.files["metrics"] == "metrics.dvx"
    assert [e["path"] for e in r.inputs] == ["data"] and [e["path"] for e in r.outputs] == ["model.bin"]
    assert r.code["commit"] == git("rev-parse", "HEAD", cwd=repo).strip()
    assert r.environment["packages"]["pyarrow"] and r.metrics["loss"]["count"] == 3
    assert r.record()["environment"] == r.environment and r.record()["id"] == run.id
    loss = r.history("loss")
    assert loss.column_names == ["step", "seq", "time", "loss"]
    assert loss.column("step").to_pylist() == [0, 0, 1] and loss.column("loss").to_pylist() == [3.0, 2.5, 2.0]
    both = r.history(["loss", "acc"], x="seq")
    assert both.column_names == ["seq", "step", "time", "loss", "acc"]
    assert both.column("acc").to_pylist() == [0.1, None, 0.2]
    full = r.history()
    assert full.column("count").to_pylist() == [None, None, None, 7]
    assert full.column("flag").to_pylist() == [None, None, None, True]
    assert full.column("note").to_pylist() == [None, "restart", None, None]  # by step, then as logged
    assert full.num_rows == 4 and r.points().num_rows == 8  # every point
    assert r.history("nope").num_rows == 0
    sysm = r.system_metrics()
    assert sysm.num_rows >= 1 and "cpu.percent" in sysm.column_names and sysm.column_names[0] == "time"
    with pytest.raises(dvx.DvxError, match="x must be one of"):
        r.history(x="epoch")
    with pytest.raises(dvx.DvxError, match="no run 'zzzz'"):
        api.run("zzzz")


def test_a_running_run_is_listed(runs_repo: tuple[Path, dict[str, str]]) -> None:
    repo, _ = runs_repo
    api = Api(str(repo))
    run = dr.init(name="live", config={"lr": 7.0}, system_metrics=False, capture_output=False)
    try:
        run.log({"loss": 1.0})
        run.flush()  # what the background writer does every 0.5 s
        found = api.runs("config.lr = 7")
        assert [(r.name, r.state, r.commit) for r in found] == [("live", "running", None)]
        assert found[0].history("loss").column("loss").to_pylist() == [1.0]
    finally:
        run.finish()
    assert [(r.name, r.state) for r in api.runs("config.lr = 7")] == [("live", "finished")]


def test_index_follows_the_refs(runs_repo: tuple[Path, dict[str, str]]) -> None:
    repo, ids = runs_repo
    api = Api(str(repo))
    path = index.index_path(api.repo)
    assert len(api.runs()) == 5 and os.path.isfile(path)
    assert path.startswith(str(repo / ".dvx" / "state"))
    # a ref removed by git
    git("update-ref", "-d", f"refs/dvx/runs/{ids['vit']}", cwd=repo)
    assert "vit" not in names(api.runs())
    # a ref moved: by a resume (a new commit), then back by git (the record there counts)
    ref = f"refs/dvx/runs/{ids['resnet-b']}"
    first = git("rev-parse", ref, cwd=repo).strip()
    with dr.init(id=ids["resnet-b"], resume=True, system_metrics=False, capture_output=False) as run:
        run.log({"loss": 0.001})
    assert api.run(ids["resnet-b"]).summary["loss"] == 0.001
    assert api.run(ids["resnet-b"]).commit != first
    git("update-ref", ref, first, cwd=repo)
    assert api.run(ids["resnet-b"]).summary["loss"] == pytest.approx(1 / 6)
    assert api.run(ids["resnet-b"]).commit == first
    # refs packed by git (packed-refs), then a new one added
    git("pack-refs", "--all", cwd=repo)
    assert len(api.runs()) == 4
    with dr.init(name="new", system_metrics=False, capture_output=False):
        pass
    assert names(api.runs())[0] == "new"
    # never the source of truth: a damaged index is rebuilt, a deleted one too
    before = [(r.id, r.name) for r in api.runs()]
    with open(path, "wb") as f:
        f.write(b"garbage")
    assert [(r.id, r.name) for r in api.runs()] == before
    os.unlink(path)
    assert [(r.id, r.name) for r in api.runs()] == before
    assert api.reindex() == 5


def test_index_after_gc_reads_packed_objects(runs_repo: tuple[Path, dict[str, str]]) -> None:
    repo, ids = runs_repo
    git("gc", "-q", cwd=repo)
    api = Api(str(repo))
    assert api.reindex() == 5
    assert names(api.runs('name = "vit"')) == ["vit"]
    assert api.run(ids["vit"]).history("loss").num_rows == 5


# -- the CLI ----------------------------------------------------------------------------------
def test_cli_list_filter_sort_limit(runs_repo: tuple[Path, dict[str, str]]) -> None:
    repo, ids = runs_repo
    out = run_dvx("runs", "list", "--filter", 'tags contains "baseline"', "--sort", "-summary.acc",
                  cwd=repo).stdout
    lines = out.splitlines()
    assert lines[0].split()[-1] == "summary.acc"
    assert [line.split()[0] for line in lines[1:]] == [ids["resnet-a"], ids["vit"]]
    data = json.loads(run_dvx("runs", "list", "--json", "--sort", "name", "--limit", "2", cwd=repo).stdout)
    assert [d["name"] for d in data] == ["resnet-a", "resnet-b"]
    nan = json.loads(run_dvx("runs", "list", "--json", "--filter", 'name = "resnet-c"', cwd=repo).stdout)
    assert nan[0]["summary"]["acc"] == {"$float": "nan"}
    assert "no runs match" in run_dvx("runs", "list", "--filter", "config.lr > 5", cwd=repo).stdout
    bad = run_dvx("runs", "list", "--filter", "config.lr <", cwd=repo, check=False)
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[0] == "error: expected a value after '<' at column 12"


def test_cli_diff(runs_repo: tuple[Path, dict[str, str]]) -> None:
    repo, ids = runs_repo
    a, b = ids["resnet-a"], ids["resnet-b"]
    out = run_dvx("runs", "diff", a, b, cwd=repo).stdout
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert rows["config.lr"] == ["0.0001", "0.01"] and rows["config.opt.name"] == ["adam", "sgd"]
    assert rows["name"] == ["resnet-a", "resnet-b"] and "config.layers" in rows
    assert "state" not in rows and "code.commit" not in rows  # the same: left out
    full = run_dvx("runs", "diff", a, b, "--all", cwd=repo).stdout
    assert "code.commit" in full and "state" in full and "start_time" in full
    data = json.loads(run_dvx("runs", "diff", a, b, "--json", cwd=repo).stdout)
    assert data["config"]["lr"] == [0.0001, 0.01] and data["config"]["layers"] == [[1, 2], None]
    assert data["code"] == {} and data["inputs"] == {} and data["code_differs"] is False
    # code that differs: an uncommitted change in one run
    write(repo / "train.py", "print('changed')\n")
    with dr.init(name="dirty", system_metrics=False, capture_output=False) as run:
        pass
    data = json.loads(run_dvx("runs", "diff", a, run.id, "--json", cwd=repo).stdout)
    assert data["code"]["dirty"] == [False, True] and data["code_differs"] is True
    assert data["code"]["diff"][0] is None and len(data["code"]["diff"][1]) == 40
    assert "code.diff" in run_dvx("runs", "diff", a, run.id, cwd=repo).stdout
    same = run_dvx("runs", "diff", a, a, cwd=repo).stdout
    assert "do not differ" in same


def test_cli_export(runs_repo: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, ids = runs_repo
    out = run_dvx("runs", "export", ids["vit"], "--format", "parquet", "-o", str(tmp_path / "p.parquet"),
                  cwd=repo)
    assert "wrote 5 points" in out.stdout
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.num_rows == 5 and table.column("key").to_pylist() == ["loss"] * 5
    run_dvx("runs", "export", ids["vit"], "--format", "csv", "-o", str(tmp_path / "p.csv"), cwd=repo)
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == '"seq","step","time","key","kind","value","text"' and len(lines) == 6
    bad = run_dvx("runs", "export", ids["vit"], "--format", "xlsx", "-o", str(tmp_path / "x"), cwd=repo,
                  check=False)
    assert bad.returncode == 2 and "unknown format 'xlsx'" in bad.stderr
    assert isinstance(table, pa.Table)
