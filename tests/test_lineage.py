"""The lineage graph (issue 11 items 2-3; protocols/lineage.md): real git repositories,
real runs (``dvx.init``), the CLI in process and as a program."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import dvx
import dvx.api
import dvx.runs as dr
from dvx.lineage.model import LineageError
from dvx.lineage.query import LineageIndex, lineage
from dvx.lineage.store import FILE_NAME, Index, Tables, encode, index_dir, sort_edges
from dvx.lineage.walk import closure
from dvx.repo import Repository
from tests.conftest import VECTORS, Cli, git, run_dvx, write


@pytest.fixture(autouse=True)
def _no_leftover_run():
    yield
    run = dr.current()
    if run is not None:
        run.finish()


def _run(inputs: list[str], outputs: dict[str, str], name: str) -> str:
    """A real run: uses ``inputs``, writes and logs ``outputs`` (path -> content)."""
    with dr.init(project="p", name=name, system_metrics=False, capture_output=False) as run:
        for path in inputs:
            run.use_artifact(path)
        for path, text in outputs.items():
            write(Path(path), text)
            run.log_artifact(path, type="model")
    return run.id


def _pointer_id(repo: Path, path: str, rev: str | None = None) -> str:
    text = git("show", f"{rev}:{path}.dvx", cwd=repo) if rev else (repo / f"{path}.dvx").read_text()
    return next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("id: "))


@pytest.fixture
def project(repo_dir: Path, cli: Cli) -> dict[str, str]:
    """data committed; a training run (data -> model); an evaluation run (model -> report)."""
    write(repo_dir / "data" / "a.csv", "x,y\n1,2\n")
    write(repo_dir / "train.py", "print('train')\n")
    cli("add", "data")
    cli("commit", "-a", "-m", "dataset")
    git("add", "train.py", cwd=repo_dir)
    git("commit", "-qm", "code", cwd=repo_dir)
    train = _run(["data"], {"models/model.pt": "weights v1"}, "train")
    evaluation = _run(["models/model.pt"], {"eval/report.json": '{"acc": 0.9}'}, "eval")
    return {"train": train, "eval": evaluation, "data": _pointer_id(repo_dir, "data"),
            "head": git("rev-parse", "HEAD", cwd=repo_dir).strip(),
            "data_commit": git("rev-parse", "HEAD~1", cwd=repo_dir).strip()}


def _keys(graph: object) -> set[str]:
    return {n.key for n in graph.nodes}  # type: ignore[attr-defined]


# -- the graph --------------------------------------------------------------------------
def test_model_lineage_up_and_down(project: dict[str, str], repo_dir: Path) -> None:
    model = json.loads(subprocess.run(["git", "show", f"refs/dvx/runs/{project['train']}:.dvx-run/run.json"],
                                      cwd=repo_dir, capture_output=True, text=True, check=True).stdout)
    model_id = model["outputs"][0]["id"]
    g = dvx.api.lineage("models/model.pt", direction="both")
    assert g.target.key == f"data:{model_id}"
    edges = {(e.source, e.target, e.kind) for e in g.edges}
    t, e = f"run:{project['train']}", f"run:{project['eval']}"
    assert (f"data:{project['data']}", t, "used") in edges
    assert (t, f"data:{model_id}", "produced") in edges
    assert (f"data:{model_id}", e, "used") in edges
    assert (f"commit:{project['head']}", t, "code") in edges  # the code it ran, checked against git
    assert g.node(t).attrs["code"] == project["head"]
    depth = {n.key: n.depth for n in g.nodes}
    assert depth[t] == -1 and depth[f"data:{project['data']}"] == -2 and depth[e] == 1
    assert not g.cycles and not g.truncated
    # upstream only: no eval run; downstream only: no training run
    assert e not in _keys(dvx.api.lineage("models/model.pt"))
    assert t not in _keys(dvx.api.lineage("models/model.pt", direction="down"))


def test_committed_in_and_derived_from_follow_git(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "d.txt", "one\n")
    cli("add", "d.txt")
    cli("commit", "-m", "v1")
    v1, c1 = _pointer_id(repo_dir, "d.txt"), git("rev-parse", "HEAD", cwd=repo_dir).strip()
    write(repo_dir / "d.txt", "two\n")
    cli("add", "d.txt")
    cli("commit", "-m", "v2")
    v2, c2 = _pointer_id(repo_dir, "d.txt"), git("rev-parse", "HEAD", cwd=repo_dir).strip()
    # a branch that commits v1's bytes under another name: same data node, first seen there
    git("checkout", "-qb", "side", c1, cwd=repo_dir)
    write(repo_dir / "copy.txt", "one\n")
    cli("add", "copy.txt")
    cli("commit", "-m", "copy")
    side = git("rev-parse", "HEAD", cwd=repo_dir).strip()
    g = dvx.api.lineage(f"id:{v1}", direction="down")
    edges = {(e.source, e.target, e.kind) for e in g.edges}
    assert (f"data:{v1}", f"data:{v2}", "derived-from") in edges
    assert (f"data:{v1}", f"commit:{c1}", "committed-in") in edges
    assert (f"data:{v1}", f"commit:{side}", "committed-in") in edges
    assert (f"data:{v2}", f"commit:{c2}", "committed-in") in edges
    assert g.target.attrs["paths"] == ["copy.txt", "d.txt"]
    assert dvx.api.lineage(f"d.txt@{c1}").target.key == f"data:{v1}"  # PATH@REV
    assert dvx.api.lineage("d.txt@main").target.key == f"data:{v2}"
    assert dvx.api.lineage(v1[:10]).target.key == f"data:{v1}"  # a bare unique prefix


def test_content_id_finds_every_run_on_every_branch(repo_dir: Path, cli: Cli) -> None:
    """The same bytes under two names, used by runs on two branches."""
    write(repo_dir / "x" / "train.csv", "1,2\n")
    cli("add", "x")
    cli("commit", "-m", "x")
    first = _run(["x"], {"m1.bin": "a"}, "a")
    git("checkout", "-qb", "other", cwd=repo_dir)
    os.rename(repo_dir / "x", repo_dir / "y")
    os.rename(repo_dir / "x.dvx", repo_dir / "y.dvx")
    cli("add", "y")
    cli("commit", "-a", "-m", "renamed")
    second = _run(["y"], {"m2.bin": "b"}, "b")
    g = dvx.api.lineage(f"id:{_pointer_id(repo_dir, 'y')}", direction="down", types="run")
    assert {n.key for n in g.nodes if n.kind == "run"} == {f"run:{first}", f"run:{second}"}
    assert set(g.target.attrs["paths"]) == {"x", "y"}


def test_cycle_is_reported_and_the_walk_ends(repo_dir: Path, cli: Cli) -> None:
    """A run that turns y back into x's bytes: x -> A -> y -> B -> x."""
    write(repo_dir / "x.txt", "same\n")
    cli("add", "x.txt")
    cli("commit", "-m", "x")
    _run(["x.txt"], {"y.txt": "other\n"}, "a")
    _run(["y.txt"], {"x2.txt": "same\n"}, "b")
    g = dvx.api.lineage("x.txt", direction="both")
    assert g.cycles and g.cycles[0][0] == g.cycles[0][-1]
    proc = run_dvx("lineage", "x.txt", "--both", cwd=repo_dir)
    assert "cycle in the lineage data" in proc.stderr


def test_types_depth_limit_and_formats(project: dict[str, str], repo_dir: Path, cli: Cli) -> None:
    g = dvx.api.lineage("eval/report.json", types=["run"])
    assert {n.kind for n in g.nodes} == {"data", "run"} and [n.kind for n in g.nodes].count("data") == 1
    assert {(e.source, e.target, e.kind) for e in g.edges} >= {
        (f"run:{project['train']}", f"run:{project['eval']}", "via")}
    assert {n.key for n in dvx.api.lineage("eval/report.json", depth=1).nodes} == {
        g.target.key, f"run:{project['eval']}"}
    limited = dvx.api.lineage("eval/report.json", limit=2)
    assert len(limited.nodes) == 2 and limited.truncated
    out = cli("lineage", "eval/report.json", "--format", "json").stdout
    assert json.loads(out)["target"] == g.target.key
    dot = cli("lineage", "eval/report.json", "--format", "dot").stdout
    assert dot.startswith("digraph lineage {") and '[label="produced"]' in dot
    mermaid = cli("lineage", "eval/report.json", "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart LR") and "-->|used|" in mermaid
    text = cli("lineage", "models/model.pt", "--both").stdout
    assert "← produced by run " + project["train"] in text and "→ used by run " + project["eval"] in text
    assert "upstream (what made it)" in text and "downstream (what was made from it)" in text
    run_text = cli("lineage", f"run:{project['eval'][:5]}").stdout
    assert run_text.startswith(f"run {project['eval']}")


def test_names_from_records_are_text_in_every_format(repo_dir: Path, cli: Cli) -> None:
    """A run's name is anyone's text: no markup of Mermaid (HTML) or rich passes, and the
    plain text keeps it as written."""
    write(repo_dir / "d.txt", "d\n")
    cli("add", "d.txt")
    cli("commit", "-m", "d")
    evil = "<script>alert(1)</script> [bold]x[/] & y"
    run_id = _run(["d.txt"], {"out.txt": "o"}, evil)
    mermaid = cli("lineage", f"run:{run_id}", "--format", "mermaid").stdout
    assert "<script>" not in mermaid and "#lt;script#gt;" in mermaid and "#amp; y" in mermaid
    text = cli("lineage", f"run:{run_id}").stdout
    assert evil in text.splitlines()[0]


# -- artifacts (the agreed artifact ref format, written with git plumbing) ----------------
def _artifact_ref(repo: Path, name: str, doc: bytes, pointers: dict[str, bytes] | None = None) -> None:
    def blob(data: bytes) -> str:
        return subprocess.run(["git", "hash-object", "-w", "--stdin"], input=data, cwd=repo,
                              capture_output=True, check=True).stdout.decode().strip()

    versions = "".join(f"100644 blob {blob(data)}\t{n}\n" for n, data in (pointers or {}).items())
    lines = f"100644 blob {blob(doc)}\tartifact.json\n"
    if versions:
        sub = subprocess.run(["git", "mktree"], input=versions.encode(), cwd=repo, capture_output=True,
                             check=True).stdout.decode().strip()
        lines += f"040000 tree {sub}\tversions\n"
    tree = subprocess.run(["git", "mktree"], input=lines.encode(), cwd=repo, capture_output=True,
                          check=True).stdout.decode().strip()
    commit = git("commit-tree", tree, "-m", f"artifacts: {name}", cwd=repo).strip()
    git("update-ref", f"refs/dvx/artifacts/{name}", commit, cwd=repo)


def _artifact_doc(name: str, versions: list[tuple[str, str | None]], aliases: dict[str, int]) -> bytes:
    return json.dumps({"format": 1, "name": name, "type": "model", "aliases": aliases,
                       "retention": {"keep_last": None, "keep_aliased": True, "ttl_days": None},
                       "versions": [{"version": i, "id": ident, "kind": "file", "size": 1, "files": 1,
                                     "path": "models/model.pt", "run": run, "commit": None,
                                     "created": "2026-12-01T00:00:00Z", "dropped": False}
                                    for i, (ident, run) in enumerate(versions)]}, sort_keys=True).encode()


def test_artifact_targets_names_and_bad_records(project: dict[str, str], repo_dir: Path, cli: Cli) -> None:
    model_id = dvx.api.lineage("models/model.pt").target.id
    pointer = (repo_dir / "models" / "model.pt.dvx").read_bytes()
    versions = [(project["data"], None), (model_id, project["train"])]
    doc = _artifact_doc("model", versions, {"latest": 1, "best": 0})
    _artifact_ref(repo_dir, "model", doc, {"v0.dvx": pointer, "v1.dvx": pointer})
    _artifact_ref(repo_dir, "broken", b"{not json")
    g = dvx.api.lineage("artifact:model:latest")
    assert g.target.id == model_id and "model:v1 (latest)" in g.target.attrs["artifacts"]
    assert f"run:{project['train']}" in _keys(g)
    assert dvx.api.lineage("artifact:model:best").target.id == project["data"]
    assert dvx.api.lineage("artifact:model:v1").target.id == model_id
    assert dvx.api.lineage("artifact:model").target.id == model_id  # latest
    assert any("refs/dvx/artifacts/broken" in p for p in g.problems)
    with pytest.raises(LineageError, match="no version or alias 'prod'"):
        dvx.api.lineage("artifact:model:prod")
    with pytest.raises(LineageError, match="no artifact 'nope'"):
        dvx.api.lineage("artifact:nope")
    # a tracked path named like the artifact: ambiguous, with both spellings offered
    write(repo_dir / "model", "other bytes")
    cli("add", "model")
    cli("commit", "-m", "a path called model")
    res = cli("lineage", "model", ok=False)
    assert res.exit_code == 1
    assert "ambiguous" in res.output and "`./model`" in res.output and "`artifact:model`" in res.output
    assert cli("lineage", "./model", "--format", "json").exit_code == 0
    out = cli("lineage", "artifact:model", "--format", "json").stdout
    assert json.loads(out)["target"] == f"data:{model_id}"


# -- bad input --------------------------------------------------------------------------
def test_bad_targets_and_options(project: dict[str, str], repo_dir: Path, cli: Cli) -> None:
    res = cli("lineage", "nonesuch", ok=False)
    assert res.exit_code == 1 and "hint:" in res.output
    assert "error: unknown lineage target 'nonesuch'" in res.output
    assert cli("lineage", "run:zzzz", ok=False).exit_code == 1
    assert cli("lineage", "id:xyz", ok=False).exit_code == 1
    assert "unknown revision" in cli("lineage", "data@nope", ok=False).output
    assert cli("lineage", "data", "--upstream", "--downstream", ok=False).exit_code == 2
    assert cli("lineage", "data", "--format", "png", ok=False).exit_code == 2
    assert cli("lineage", "data", "--depth", "-1", ok=False).exit_code == 2
    assert "unknown node type 'blob'" in cli("lineage", "data", "--type", "blob", ok=False).output
    with pytest.raises(LineageError):
        dvx.api.lineage("data", direction="sideways")
    with pytest.raises(LineageError):
        dvx.api.lineage("data", limit=0)


def test_a_forged_run_record_cannot_name_a_path_outside(repo_dir: Path, cli: Cli) -> None:
    """Names from records are attacker-written: an unsafe path is dropped from the node,
    the bytes still count, and nothing is written anywhere."""
    from dvx.lineage.build import Builder

    b = Builder(Repository.find(str(repo_dir)))
    ident = "e" * 64
    b.add_run("forged", None, {"inputs": [{"id": ident, "path": "../../etc/passwd"}],
                               "outputs": [{"id": "not-hex", "path": "x"}], "code": {"commit": "zz"}})
    d = b.meta(b.index[f"data:{ident}"])
    assert "paths" not in d or d["paths"] == []
    assert any("no valid content id" in p for p in b.problems)
    assert "commit:zz" not in b.index


# -- the index ----------------------------------------------------------------------------
def test_index_is_incremental_and_rebuilt_when_damaged_or_stale(project: dict[str, str], repo_dir: Path,
                                                                cli: Cli) -> None:
    repo = Repository.find(str(repo_dir))
    li = LineageIndex(repo)
    first = lineage(repo, "data", "down", index=li)
    path = Path(index_dir(repo.dvx_dir)) / FILE_NAME
    assert path.exists() and not first.notices
    # one new commit: only it is read
    write(repo_dir / "data" / "b.csv", "3,4\n")
    cli("add", "data")
    cli("commit", "-m", "more data")
    new = lineage(repo, "data", "up", index=li)
    assert li.last_commits_read == 1 and not new.notices
    assert ("derived-from" in {e.kind for e in new.edges})
    # the same answer from a fresh build, and deleting the index is safe
    path.unlink()
    again = lineage(repo, "data", "up")
    assert _keys(again) == _keys(new) and not again.notices
    # damaged: rebuilt with a notice
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    damaged = lineage(repo, "data", "up")
    assert any("damaged" in n and "rebuilt" in n for n in damaged.notices) and _keys(damaged) == _keys(new)
    path.write_bytes(b"garbage")
    assert lineage(repo, "data", "up").notices
    # stale: history rewritten (the new commit dropped): rebuilt, and its version gone
    newest = new.target.key
    git("reset", "-q", "--hard", "HEAD~1", cwd=repo_dir)
    git("reflog", "expire", "--expire=now", "--all", cwd=repo_dir)
    after = lineage(repo, f"id:{project['data']}", "down", index=li)
    assert any("rewound" in n for n in after.notices)
    assert newest not in _keys(after)
    # a run removed: rebuilt, the run gone
    cli("runs", "rm", project["eval"])
    gone = lineage(repo, f"id:{project['data']}", "down", index=li)
    assert f"run:{project['eval']}" not in _keys(gone)


def test_the_cli_program_and_the_api_object(project: dict[str, str], repo_dir: Path) -> None:
    proc = run_dvx("lineage", "models/model.pt", "--both", "--format", "json", cwd=repo_dir)
    assert {n["key"] for n in json.loads(proc.stdout)["nodes"]} >= {f"run:{project['train']}",
                                                                   f"run:{project['eval']}"}
    with dvx.Api(str(repo_dir)) as api:
        g1 = api.lineage("models/model.pt", "both")
        g2 = api.lineage(f"run:{project['eval']}", "up")
        assert f"run:{project['train']}" in g2 and g1.target.key in g2
        assert g1.to_json()["direction"] == "both"


# -- the format: vectors --------------------------------------------------------------------
def test_index_file_vectors() -> None:
    vec = json.loads((VECTORS / "lineage.json").read_text())
    nodes, edges = vec["nodes"], vec["edges"]
    column = [np.array([e[i] for e in edges], np.uint8 if i == 2 else np.uint32) for i in range(3)]
    src, dst, kind = sort_edges(*column)
    metas = [json.dumps(n["meta"], sort_keys=True, separators=(",", ":")).encode() for n in nodes]
    t = Tables.from_lists(np.array([n["kind"] for n in nodes], np.uint8), [n["key"] for n in nodes], metas,
                          src, dst, kind, vec["state"], vec["runs"], set(vec["walked"]))
    data = encode(t, vec["signature"])
    assert data.hex() == vec["file_hex"]
    ix = Index(bytes.fromhex(vec["file_hex"]), "vector")
    assert ix.signature == vec["signature"] and ix.keys() == [n["key"] for n in nodes]
    assert [ix.meta(i) for i in range(ix.n)] == [n["meta"] for n in nodes]
    assert ix.state == vec["state"] and ix.runs() == vec["runs"] and ix.walked() == set(vec["walked"])
    for c in vec["closures"]:
        levels, walked = closure(ix, c["start"], c["up"])
        assert levels == c["levels"] and sorted(walked) == c["edges"]
    bad = bytearray(data)
    bad[8] = 9  # another format version
    with pytest.raises(Exception, match="format 9"):
        Index(bytes(bad), "vector")


def test_a_path_with_an_at_sign(repo_dir: Path, cli: Cli) -> None:
    """``PATH@REV`` splits at the last ``@`` only when no tracked path is named so."""
    write(repo_dir / "v@2.txt", "x\n")
    cli("add", "v@2.txt")
    cli("commit", "-m", "at")
    ident = _pointer_id(repo_dir, "v@2.txt")
    assert dvx.api.lineage("v@2.txt").target.id == ident
    assert dvx.api.lineage("v@2.txt@HEAD").target.id == ident


def test_updates_for_a_new_run_and_a_moved_alias(project: dict[str, str], repo_dir: Path, cli: Cli) -> None:
    """A new run ref and a moved artifact ref are read without a rebuild (no notice)."""
    repo = Repository.find(str(repo_dir))
    li = LineageIndex(repo)
    model = lineage(repo, "models/model.pt", "down", index=li).target.id
    pointer = (repo_dir / "models" / "model.pt.dvx").read_bytes()
    doc = _artifact_doc("m", [(model, project["train"])], {"latest": 0})
    _artifact_ref(repo_dir, "m", doc, {"v0.dvx": pointer})
    assert "m:v0 (latest)" in lineage(repo, "artifact:m", "up", index=li).target.attrs["artifacts"]
    third = _run(["models/model.pt"], {"eval/other.json": "{}"}, "third")
    g = lineage(repo, f"id:{model}", "down", index=li)
    assert f"run:{third}" in g and not g.notices and li.last_commits_read == 0
    _artifact_ref(repo_dir, "m", _artifact_doc("m", [(model, project["train"])], {"latest": 0, "prod": 0}),
                  {"v0.dvx": pointer})
    moved = lineage(repo, "artifact:m:prod", "up", index=li)
    # the training run's log_artifact(type="model") made artifact model.pt:v0 of the same bytes
    assert sorted(moved.target.attrs["artifacts"]) == ["m:v0 (latest, prod)", "model.pt:v0 (latest)"]
    assert not moved.notices


def test_uncommitted_data_is_answered_alone(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "new.txt", "fresh\n")
    cli("add", "new.txt")
    res = cli("lineage", "new.txt", "--format", "json")
    out = json.loads(res.stdout)
    assert [n["paths"] for n in out["nodes"]] == [["new.txt"]] and out["edges"] == []
    assert "in no commit, run or artifact yet" in out["notices"][0]


def test_ids_with_a_trailing_newline_are_refused(project: dict[str, str], repo_dir: Path) -> None:
    """``^[0-9a-f]{64}$`` with ``re.match`` takes "<64 hex>\\n": a forged record's id
    must be exactly 64 hex digits, or the artifact is reported and skipped."""
    from dvx.lineage.artifacts import read_artifacts

    model_id = dvx.api.lineage("models/model.pt").target.id
    _artifact_ref(repo_dir, "nl", _artifact_doc("nl", [(model_id + "\n", None)], {"latest": 0}))
    sha = git("rev-parse", "refs/dvx/artifacts/nl", cwd=repo_dir).strip()
    problems: list[str] = []
    with Repository.find(str(repo_dir)) as repo:
        found = read_artifacts(repo, {"nl": sha}, problems)
    assert "nl" not in found and any("no valid content id" in p for p in problems)
