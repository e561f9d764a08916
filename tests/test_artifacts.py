"""Artifacts (protocols/artifacts.md): names and references, artifact.json, versions
by content id, aliases with history, concurrent writers, runs that log and use them,
`dvx artifacts ...`, materialising a version, retention applied by gc, hostile data.
Real repositories, checked with the git CLI; real processes for concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dvx.artifacts import ArtifactError, get_artifact, list_artifacts, parse_reference, resolve
from dvx.artifacts.read import pick, version_pointer
from dvx.artifacts.record import decode_artifact, encode_artifact
from dvx.artifacts.write import add_version, remove_alias, set_alias
from dvx.errors import DvxError, FormatVersionError
from dvx.ops.add import add
from dvx.repo import Repository
from tests.conftest import git, pseudo_random, run_dvx, write

TOP = Path(__file__).resolve().parent.parent
VECTORS = json.loads((TOP / "protocols" / "vectors" / "artifacts.json").read_text(encoding="utf-8"))


def add_file(repo: Repository, rel: str, data: bytes):  # type: ignore[no-untyped-def]
    write(Path(repo.root) / rel, data)
    return add(repo, [os.path.join(repo.root, rel)])[0].pointer


def commit_blob(cwd: Path, ref: str, files: dict[str, bytes], parent: str | None = None) -> str:
    """A commit made with the git CLI (hostile data): ``files`` at the top of its tree."""
    env = dict(os.environ, GIT_INDEX_FILE=str(cwd / ".git" / "tmp-index"))
    subprocess.run(["git", "read-tree", "--empty"], cwd=cwd, env=env, check=True)
    for path, data in files.items():
        blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=cwd, input=data,
                              capture_output=True, check=True).stdout.decode().strip()
        subprocess.run(["git", "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}"], cwd=cwd,
                       env=env, check=True)
    tree = subprocess.run(["git", "write-tree"], cwd=cwd, env=env, capture_output=True, check=True,
                          text=True).stdout.strip()
    args = ["git", "commit-tree", tree, "-m", "hand-made"] + (["-p", parent] if parent else [])
    sha = subprocess.run(args, cwd=cwd, capture_output=True, check=True, text=True).stdout.strip()
    git("update-ref", ref, sha, cwd=cwd)
    return sha


# -- vectors ----------------------------------------------------------------------------------
def test_canonical_artifact_json_vector() -> None:
    data = VECTORS["canonical"].encode()
    art = decode_artifact(data, "vector", "model")
    assert encode_artifact(art) == data  # byte for byte
    assert [v.version for v in art.live] == [1, 2] and art.versions[0].dropped
    assert art.aliases == {"latest": 2, "best": 1, "production": 1}
    assert art.retention.keep_last == 2 and art.retention.keep_aliased and art.retention.ttl_days is None
    assert art.with_aliases().versions[1].aliases == ("best", "production")
    assert art.versions[2].kind == "dir" and art.versions[2].files == 3


def test_reference_vectors(repo_dir: Path) -> None:
    for case in VECTORS["references"]:
        ref = parse_reference(case["text"])
        assert (ref.name, ref.version, ref.alias) == (case["name"], case["version"], case["alias"]), case
    for text in VECTORS["invalid_references"]:
        with pytest.raises(ArtifactError):
            parse_reference(text)
    from dvx.artifacts.names import check_alias, check_name

    for name in VECTORS["valid_names"]:
        assert check_name(name) == name
    for name in VECTORS["invalid_names"]:
        with pytest.raises(ArtifactError):
            check_name(name)
    for alias in VECTORS["valid_aliases"]:
        assert check_alias(alias) == alias
    for alias in VECTORS["invalid_aliases"]:
        with pytest.raises(ArtifactError):
            check_alias(alias)
    # the vector's commit, made by the git CLI, resolves as the spec says
    commit_blob(repo_dir, VECTORS["ref_of"]["model"], {k: v.encode() for k, v in VECTORS["tree"].items()})
    repo = Repository.find(str(repo_dir))
    for case in VECTORS["references"]:
        if case["resolves_to"] is not None:
            assert resolve(repo, case["text"]).version == case["resolves_to"], case
    for text in VECTORS["unresolvable"]:
        with pytest.raises(ArtifactError):
            resolve(repo, text)
    assert version_pointer(repo, get_artifact(repo, "model"), 2).kind == "tree"


def test_malformed_vectors_are_refused_with_a_clear_error() -> None:
    for case in VECTORS["malformed"]:
        with pytest.raises(ArtifactError, match="refs/dvx/artifacts/model: malformed artifact.json"):
            decode_artifact(case["bytes"].encode(), "refs/dvx/artifacts/model", "model")
    newer = VECTORS["canonical"].replace('"format": 1', '"format": 2').encode()
    with pytest.raises(FormatVersionError, match="format 2 is not supported"):
        decode_artifact(newer, "x", "model")


# -- versions and aliases ---------------------------------------------------------------------
def test_versions_only_when_content_changes_and_aliases_keep_history(repo_dir: Path) -> None:
    repo = Repository.find(str(repo_dir))
    p0 = add_file(repo, "models/m.bin", b"zero" * 100)
    v, created = add_version(repo, "model", "model", p0, "models/m.bin")
    assert (v.version, created, v.aliases) == (0, True, ("latest",))
    again, created = add_version(repo, "model", "model", p0, "models/m.bin", aliases=["best"])
    assert (again.version, created, again.aliases) == (0, False, ("best", "latest"))
    p1 = add_file(repo, "models/m.bin", b"one" * 100)
    v1, created = add_version(repo, "model", "model", p1, "models/m.bin")
    assert (v1.version, created) == (1, True)
    assert set_alias(repo, "model:v1", "best").version == 1
    assert set_alias(repo, "model:latest", "prod").version == 1
    assert remove_alias(repo, "model", "prod") == 1
    art = get_artifact(repo, "model")
    assert art.aliases == {"latest": 1, "best": 1}
    assert pick(art, "model:v0").id == p0.id and pick(art, "model").id == p1.id
    # the commit chain is the alias history, readable with git
    log = git("log", "--format=%s", "refs/dvx/artifacts/model", cwd=repo_dir).splitlines()
    assert log == ["artifacts: model alias prod removed (was v1)", "artifacts: model alias prod -> v1",
                   "artifacts: model alias best -> v1 (was v0)", "artifacts: model v1 (alias latest)",
                   "artifacts: model re-logged v0 (alias latest, best)", "artifacts: model v0 (alias latest)"]
    assert git("show", "refs/dvx/artifacts/model~3:artifact.json", cwd=repo_dir).count('"best": 0') == 1
    tree = git("ls-tree", "-r", "--name-only", "refs/dvx/artifacts/model", cwd=repo_dir).split()
    assert tree == ["artifact.json", "versions/v0.dvx", "versions/v1.dvx"]
    # the branch and HEAD were never touched (the repository has no commit yet)
    assert git("for-each-ref", "--format=%(refname)", cwd=repo_dir).split() == ["refs/dvx/artifacts/model"]
    with pytest.raises(ArtifactError, match="has type 'model', not 'dataset'"):
        add_version(repo, "model", "dataset", p1, "models/m.bin")
    with pytest.raises(ArtifactError, match="managed by DVX"):
        set_alias(repo, "model:v0", "latest")
    with pytest.raises(ArtifactError, match="no alias 'nope'.*"):
        resolve(repo, "model:nope")
    with pytest.raises(ArtifactError) as info:
        resolve(repo, "model:v9")
    assert info.value.hint is not None and "v0, v1" in info.value.hint
    with pytest.raises(ArtifactError) as info:
        resolve(repo, "modle")
    assert info.value.hint is not None and "model" in info.value.hint


def test_concurrent_writers_lose_no_update(repo_dir: Path) -> None:
    """Processes adding versions and aliases at once: every change lands (CAS + retry)."""
    repo = Repository.find(str(repo_dir))
    add_version(repo, "model", "model", add_file(repo, "m0", b"base"), "m0")
    code = textwrap.dedent("""
        import sys
        from dvx.repo import Repository
        from dvx.ops.add import add
        from dvx.artifacts.write import add_version, set_alias
        i = int(sys.argv[1])
        repo = Repository.find(".")
        open(f"f{i}", "wb").write(f"content {i}".encode() * 50)
        p = add(repo, [f"f{i}"])[0].pointer
        add_version(repo, "model", "model", p, f"f{i}", aliases=[f"a{i}"])
        set_alias(repo, "model:v0", f"b{i}")
    """)
    env = dict(os.environ, PYTHONPATH=str(TOP))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], cwd=repo_dir, env=env,
                              stderr=subprocess.PIPE, text=True) for i in range(6)]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    art = get_artifact(repo, "model")
    assert len(art.versions) == 7
    assert {f"f{i}" for i in range(6)} == {v.path for v in art.versions[1:]}
    for i in range(6):
        assert art.versions[art.aliases[f"a{i}"]].path == f"f{i}"
        assert art.aliases[f"b{i}"] == 0
    assert len(git("rev-list", "refs/dvx/artifacts/model", cwd=repo_dir).split()) == 13


# -- runs -------------------------------------------------------------------------------------
def python(cwd: Path, code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, text=True,
                          capture_output=True,
                          env=dict(os.environ, PYTHONPATH=str(TOP)))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_runs_log_and_use_artifacts_and_the_api_walks_them(repo_dir: Path) -> None:
    write(repo_dir / "data" / "train.csv", "a\n1\n")
    write(repo_dir / "models" / "model.pt", b"weights-1")
    git("add", "-A", cwd=repo_dir)
    git("commit", "-qm", "code", cwd=repo_dir)
    python(repo_dir, """
        import dvx
        with dvx.init(id="train1", system_metrics=False) as run:
            run.use_artifact("data")
            run.log_artifact("models/model.pt", name="model", type="model", aliases=["best"])
            run.log_artifact("data", type=None)  # no type: an output edge, not an artifact
    """)
    v = resolve(Repository.find(str(repo_dir)), "model:best")
    assert (v.version, v.run, v.path) == (0, "train1", "models/model.pt")
    assert v.commit == git("rev-parse", "HEAD", cwd=repo_dir).strip()
    assert [a.name for a in list_artifacts(Repository.find(str(repo_dir)))] == ["model"]
    write(repo_dir / "models" / "model.pt", b"weights-2")
    out = python(repo_dir, """
        import dvx, warnings
        warnings.simplefilter("error")
        with dvx.init(id="train2", system_metrics=False) as run:
            run.log_artifact("models/model.pt", name="model", type="model")
        with dvx.init(id="eval1", system_metrics=False) as run:
            ref = run.use_artifact("model:best")
            print(ref.path, ref.id)
    """)
    best = resolve(Repository.find(str(repo_dir)), "model:best")
    assert out.split() == ["models/model.pt", best.id]
    rec = json.loads(git("show", "refs/dvx/runs/eval1:.dvx-run/run.json", cwd=repo_dir))
    assert rec["inputs"][0]["artifact"] == "model:v0" and rec["inputs"][0]["id"] == best.id
    assert git("show", f"refs/dvx/runs/eval1:{rec['inputs'][0]['pointer']}", cwd=repo_dir).count(best.id) == 1
    out = python(repo_dir, """
        import dvx
        api = dvx.Api()
        a = api.artifact("model:best")
        print(a.qualified_name, a.type, ",".join(a.aliases))
        print(a.logged_by().id, [r.id for r in a.used_by()])
        print([v.version for v in a.versions()], api.artifact("model").version)
        print(api.artifact("model:latest").logged_by().id, api.artifact("model:v1").used_by())
        print([x.qualified_name for x in api.artifacts(type="model")])
        try:
            api.artifact("model", type="dataset")
        except dvx.DvxError as e:
            print("refused:", e.message)
    """).splitlines()
    assert out[0] == "model:v0 model best"
    assert out[1] == "train1 ['eval1']"
    assert out[2] == "['v0', 'v1'] v1"
    assert out[3] == "train2 []"
    assert out[4] == "['model:v1']"
    assert out[5] == "refused: artifact model has type 'model', not 'dataset'"
    # an unknown reference is a warning, never an exception in training code
    out = python(repo_dir, """
        import dvx, warnings
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            with dvx.init(id="eval2", system_metrics=False) as run:
                print(run.use_artifact("model:nope"))
        print(str(w[0].message))
    """).splitlines()
    assert out[0] == "None" and "no alias 'nope'" in out[1]


# -- CLI --------------------------------------------------------------------------------------
def test_cli_add_list_show_alias_retention(repo_dir: Path) -> None:
    write(repo_dir / "d" / "a.txt", "a")
    write(repo_dir / "d" / "b.txt", "b")
    got = json.loads(run_dvx("artifacts", "add", "d", "--name", "ds", "--type", "dataset", "--alias", "v1a",
                             "--json", cwd=repo_dir).stdout)
    assert (got["version"], got["created"], got["kind"], got["files"], got["aliases"]) == (0, True, "dir", 2,
                                                                                          ["latest", "v1a"])
    assert (repo_dir / "d.dvx").exists()  # stored as dvx add does
    again = run_dvx("artifacts", "add", "d", "--name", "ds", "--type", "dataset", cwd=repo_dir).stdout
    assert "unchanged content, already ds:v0" in again
    write(repo_dir / "d" / "c.txt", "c")
    run_dvx("artifacts", "add", "d", "--name", "ds", "--type", "dataset", cwd=repo_dir)
    write(repo_dir / "m.bin", "m")
    run_dvx("artifacts", "add", "m.bin", "--name", "model", "--type", "model", cwd=repo_dir)
    listed = json.loads(run_dvx("artifacts", "list", "--json", cwd=repo_dir).stdout)
    assert [(a["name"], a["type"], len(a["versions"])) for a in listed] == [("ds", "dataset", 2),
                                                                             ("model", "model", 1)]
    only = json.loads(run_dvx("artifacts", "list", "--type", "model", "--json", cwd=repo_dir).stdout)
    assert [a["name"] for a in only] == ["model"]
    text = run_dvx("artifacts", "list", cwd=repo_dir).stdout.splitlines()
    assert text[0].split() == ["NAME", "TYPE", "VERSIONS", "LATEST", "SIZE", "ALIASES"]
    assert text[1].split()[:4] == ["ds", "dataset", "2", "v1"]
    run_dvx("artifacts", "alias", "ds:v1", "best", cwd=repo_dir)
    shown = json.loads(run_dvx("artifacts", "show", "ds:best", "--json", cwd=repo_dir).stdout)
    assert shown["version"] == 1 and shown["aliases"] == ["best", "latest"]
    whole = json.loads(run_dvx("artifacts", "show", "ds", "--json", cwd=repo_dir).stdout)
    assert whole["aliases"] == {"best": 1, "latest": 1, "v1a": 0} and len(whole["versions"]) == 2
    run_dvx("artifacts", "alias", "--remove", "ds", "v1a", cwd=repo_dir)
    pol = json.loads(run_dvx("artifacts", "retention", "ds", "--keep-last", "3", "--ttl", "30", "--json",
                             cwd=repo_dir).stdout)
    assert pol["retention"] == {"keep_last": 3, "keep_aliased": True, "ttl_days": 30}
    pol = json.loads(run_dvx("artifacts", "retention", "ds", "--keep-last", "0", "--no-keep-aliased", "--json",
                             cwd=repo_dir).stdout)
    assert pol["retention"] == {"keep_last": None, "keep_aliased": False, "ttl_days": 30}
    # bad input: one clear line, non-zero exit, nothing changed
    before = git("rev-parse", "refs/dvx/artifacts/ds", cwd=repo_dir)
    for args, message in [
        (("show", "nope"), "error: no artifact named 'nope'"),
        (("show", "ds:v7"), "error: artifact ds has no version v7"),
        (("show", "ds:prod"), "error: artifact ds has no alias 'prod'"),
        (("show", "ds:v1:x"), "error: invalid artifact reference"),
        (("alias", "ds:v9", "best"), "error: artifact ds has no version v9"),
        (("alias", "ds:v0", "v3"), "error: invalid alias 'v3'"),
        (("alias", "--remove", "ds", "latest"), "error: `latest` is managed by DVX"),
        (("add", "m.bin", "--name", "ds", "--type", "model"), "error: artifact ds has type 'dataset'"),
        (("add", "nothere", "--name", "x", "--type", "model"), "error: nothere does not exist"),
        (("add", "m.bin", "--name", "../x", "--type", "model"), "error: invalid artifact name '../x'"),
        (("retention", "nope", "--keep-last", "1"), "error: no artifact named 'nope'"),
    ]:
        proc = run_dvx("artifacts", *args, cwd=repo_dir, check=False)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stderr.startswith(message), (args, proc.stderr)
        assert "hint:" in proc.stderr or "managed" in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert git("rev-parse", "refs/dvx/artifacts/ds", cwd=repo_dir) == before
    assert run_dvx("artifacts", "show", cwd=repo_dir, check=False).returncode == 2  # usage


def test_get_materialises_without_escaping_or_overwriting(repo_dir: Path, tmp_path: Path) -> None:
    write(repo_dir / "d" / "sub" / "x.bin", pseudo_random(300_000, 1))
    write(repo_dir / "d" / "y.txt", "y")
    os.symlink("y.txt", repo_dir / "d" / "link")
    run_dvx("artifacts", "add", "d", "--name", "ds", "--type", "dataset", cwd=repo_dir)
    out = tmp_path / "got"
    rep = json.loads(run_dvx("artifacts", "get", "ds", "-o", str(out), "--json", cwd=repo_dir).stdout)
    assert rep["path"] == str(out) and not rep["fetched"]
    assert (out / "sub" / "x.bin").read_bytes() == pseudo_random(300_000, 1)
    assert (out / "y.txt").read_text() == "y" and os.readlink(out / "link") == "y.txt"
    proc = run_dvx("artifacts", "get", "ds:v0", "-o", str(out), cwd=repo_dir, check=False)
    assert proc.returncode != 0 and "already exists" in proc.stderr and "--force" in proc.stderr
    (out / "y.txt").write_text("changed")
    run_dvx("artifacts", "get", "ds:v0", "-o", str(out), "--force", cwd=repo_dir)
    assert (out / "y.txt").read_text() == "y"
    default = run_dvx("artifacts", "get", "ds:latest", cwd=repo_dir).stdout
    assert (repo_dir / "artifacts" / "ds" / "v0" / "d" / "y.txt").read_text() == "y", default
    for bad in (".dvx/x", ".git/x", ".", "..", str(tmp_path)):
        proc = run_dvx("artifacts", "get", "ds", "-o", bad, "--force", cwd=repo_dir, check=False)
        assert proc.returncode == 1 and proc.stderr.startswith("error:"), (bad, proc.stderr)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dvx-")] == []


def test_hostile_artifact_refs_are_reported_never_followed(repo_dir: Path, tmp_path: Path) -> None:
    write(repo_dir / "m.bin", "m")
    run_dvx("artifacts", "add", "m.bin", "--name", "good", "--type", "model", cwd=repo_dir)
    good = json.loads(git("show", "refs/dvx/artifacts/good:artifact.json", cwd=repo_dir))
    pointer = git("show", "refs/dvx/artifacts/good:versions/v0.dvx", cwd=repo_dir).encode()
    # a record whose path climbs out, a pointer that is not one, garbage JSON, no record
    evil = dict(good, name="evil")
    evil["versions"] = [dict(good["versions"][0], path="../../outside")]
    commit_blob(repo_dir, "refs/dvx/artifacts/evil", {"artifact.json": json.dumps(evil).encode(),
                                                       "versions/v0.dvx": pointer})
    commit_blob(repo_dir, "refs/dvx/artifacts/junk", {"artifact.json": b"\xff\xfe not json"})
    commit_blob(repo_dir, "refs/dvx/artifacts/empty", {"README": b"x"})
    bad_ptr = dict(good, name="badptr")
    commit_blob(repo_dir, "refs/dvx/artifacts/badptr", {"artifact.json": json.dumps(bad_ptr).encode(),
                                                         "versions/v0.dvx": b"not a pointer"})
    proc = run_dvx("artifacts", "list", "--json", cwd=repo_dir)
    assert [a["name"] for a in json.loads(proc.stdout)] == ["badptr", "good"]
    for name in ("evil", "junk", "empty"):
        assert f"refs/dvx/artifacts/{name}" in proc.stderr
    for name, why in (("evil", "malformed artifact.json"), ("junk", "not UTF-8 JSON"),
                      ("empty", "no artifact.json")):
        shown = run_dvx("artifacts", "show", name, cwd=repo_dir, check=False)
        assert shown.returncode == 1 and why in shown.stderr and "Traceback" not in shown.stderr, shown.stderr
    got = run_dvx("artifacts", "get", "badptr", "-o", str(tmp_path / "o"), cwd=repo_dir, check=False)
    assert got.returncode == 1 and "badptr" in got.stderr and not (tmp_path / "o").exists()
    assert not (tmp_path / "outside").exists()
    # gc and fsck still work, and keep the good artifact's data
    run_dvx("gc", "--grace", "0", cwd=repo_dir, check=False)
    os.unlink(repo_dir / "m.bin")
    run_dvx("artifacts", "get", "good", "-o", str(tmp_path / "g"), cwd=repo_dir)
    assert (tmp_path / "g").read_text() == "m"


def test_get_of_a_file_into_an_existing_directory_goes_inside_it(repo_dir: Path, tmp_path: Path) -> None:
    """Regression: `dvx artifacts get model -o DIR --force` replaced the whole existing
    directory DIR (and everything in it) by the model file."""
    write(repo_dir / "models" / "m.bin", "m")
    run_dvx("artifacts", "add", "models/m.bin", "--name", "model", "--type", "model", cwd=repo_dir)
    keep = write(tmp_path / "serve" / "keep.txt", "precious")
    for extra in ([], ["--force"]):
        run_dvx("artifacts", "get", "model", "-o", str(tmp_path / "serve"), *extra, cwd=repo_dir)
        assert keep.read_text() == "precious" and (tmp_path / "serve" / "m.bin").read_text() == "m"
    write(tmp_path / "serve" / "m.bin", "older")
    proc = run_dvx("artifacts", "get", "model", "-o", str(tmp_path / "serve"), cwd=repo_dir, check=False)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    assert (tmp_path / "serve" / "m.bin").read_text() == "older"


def test_forged_created_time_is_refused_and_gc_does_not_crash(repo_dir: Path) -> None:
    """Regression: a `created` that matched the pattern but named no real time
    (month 99) passed the reader and crashed `dvx gc` (ttl) with a traceback."""
    write(repo_dir / "m.bin", "m")
    run_dvx("artifacts", "add", "m.bin", "--name", "model", "--type", "model", cwd=repo_dir)
    doc = json.loads(git("show", "refs/dvx/artifacts/model:artifact.json", cwd=repo_dir))
    pointer = git("show", "refs/dvx/artifacts/model:versions/v0.dvx", cwd=repo_dir).encode()
    doc["versions"][0]["created"] = "2026-99-99T99:99:99Z"
    doc["retention"]["ttl_days"] = 1
    commit_blob(repo_dir, "refs/dvx/artifacts/model", {"artifact.json": json.dumps(doc).encode(),
                                                        "versions/v0.dvx": pointer})
    shown = run_dvx("artifacts", "show", "model", cwd=repo_dir, check=False)
    assert shown.returncode == 1 and "invalid created" in shown.stderr, shown.stderr
    proc = run_dvx("gc", "--dry-run", cwd=repo_dir, check=False)
    assert "Traceback" not in proc.stderr and "refs/dvx/artifacts/model" in proc.stderr, proc.stderr


# -- gc ---------------------------------------------------------------------------------------
def test_gc_keeps_artifact_data_and_applies_retention(repo_dir: Path, tmp_path: Path) -> None:
    """Regression: data only an artifact version names (no branch, no work tree) stays
    through gc; retention drops versions, and their data goes with gc."""
    for i in range(4):
        write(repo_dir / "m.bin", pseudo_random(50_000, 10 + i))
        run_dvx("artifacts", "add", "m.bin", "--name", "model", "--type", "model", cwd=repo_dir)
    run_dvx("artifacts", "alias", "model:v0", "best", cwd=repo_dir)
    os.unlink(repo_dir / "m.bin")
    os.unlink(repo_dir / "m.bin.dvx")
    run_dvx("gc", "--grace", "0", cwd=repo_dir)
    for i in range(4):
        run_dvx("artifacts", "get", f"model:v{i}", "-o", str(tmp_path / f"v{i}"), cwd=repo_dir)
        assert (tmp_path / f"v{i}").read_bytes() == pseudo_random(50_000, 10 + i)
    run_dvx("artifacts", "retention", "model", "--keep-last", "1", cwd=repo_dir)
    dry = json.loads(run_dvx("gc", "--dry-run", "--grace", "0", "--json", cwd=repo_dir).stdout)
    assert [(d["name"], d["version"], d["reason"]) for d in dry["artifact_versions_dropped"]] == [
        ("model", 1, "keep_last"), ("model", 2, "keep_last")]
    assert dry["bytes_reclaimed"] > 0  # what the drop would free is counted
    assert "would drop artifact version model:v1" in run_dvx("gc", "--dry-run", cwd=repo_dir).stdout
    assert get_artifact(Repository.find(str(repo_dir)), "model").live[1].version == 1  # nothing dropped yet
    done = json.loads(run_dvx("gc", "--grace", "0", "--json", cwd=repo_dir).stdout)
    assert len(done["artifact_versions_dropped"]) == 2 and done["bytes_reclaimed"] > 0
    art = get_artifact(Repository.find(str(repo_dir)), "model")
    assert [v.version for v in art.live] == [0, 3] and art.versions[1].dropped
    assert git("log", "-1", "--format=%s", "refs/dvx/artifacts/model", cwd=repo_dir).startswith(
        "artifacts: model drop v1, v2 (retention")
    proc = run_dvx("artifacts", "get", "model:v1", "-o", str(tmp_path / "x"), cwd=repo_dir, check=False)
    assert proc.returncode == 1 and "was dropped" in proc.stderr
    run_dvx("artifacts", "get", "model:best", "-o", str(tmp_path / "best"), cwd=repo_dir)
    assert (tmp_path / "best").read_bytes() == pseudo_random(50_000, 10)
    run_dvx("fsck", cwd=repo_dir)  # the dropped versions' pointers in older commits are history, not damage
    # keep_aliased off: the aliased old version goes (keep_last), and the newest one by ttl
    run_dvx("artifacts", "retention", "model", "--ttl", "1", "--no-keep-aliased", cwd=repo_dir)
    repo = Repository.find(str(repo_dir))
    from dvx.artifacts.retention import apply_retention

    dropped = apply_retention(repo, now=__import__("time").time() + 3 * 86400)
    assert [(d.version, d.reason) for d in dropped] == [(0, "keep_last"), (3, "ttl")]
    art = get_artifact(repo, "model")
    assert art.live == [] and art.aliases == {}
    with pytest.raises(DvxError, match="has no alias 'latest'"):
        resolve(repo, "model")


# -- merge rules (pure) -----------------------------------------------------------------------
def _state(versions: list[tuple[str, str, bool]], aliases: dict[str, int], keep_last: int | None = None,
           kind: str = "model"):  # type: ignore[no-untyped-def]
    from dvx.artifacts.record import Artifact, ArtifactVersion, Retention

    vs = tuple(ArtifactVersion("m", i, (c * 64)[:64], "file", 1, 1, "p", None, None, created, dropped)
               for i, (c, created, dropped) in enumerate(versions))
    return Artifact("m", kind, vs, aliases, Retention(keep_last=keep_last))


def test_merge_rules() -> None:
    from dvx.artifacts.merge import merge

    t0, t1, t2 = "2026-12-01T00:00:00Z", "2026-12-01T00:00:01Z", "2026-12-01T00:00:02Z"
    base = _state([("a", t0, False), ("b", t0, False)], {"latest": 1, "x": 0, "y": 0})
    theirs = _state([("a", t0, True), ("b", t0, False), ("c", t1, False)], {"latest": 2, "x": 1, "y": 0},
                    keep_last=3)
    mine = _state([("a", t0, False), ("b", t0, False), ("d", t2, False), ("c", t2, False)],
                  {"latest": 3, "x": 0, "y": 1, "z": 2})
    got = merge(base, theirs, mine, "origin")
    art = got.artifact
    assert art is not None
    assert [v.id[0] for v in art.versions] == ["a", "b", "c", "d"]  # mine's c is theirs' v2
    assert art.versions[0].dropped  # dropped on one side: dropped
    assert got.renumbered == {2: 3}
    assert art.aliases == {"latest": 2, "x": 1, "y": 1, "z": 3}  # x theirs, y mine, z mine renumbered
    assert art.retention.keep_last == 3 and not got.conflicts
    clash = merge(base, _state([("a", t0, False), ("b", t0, False)], {"latest": 1, "x": 1, "y": 0}),
                  _state([("a", t0, False), ("b", t0, False), ("e", t1, False)], {"latest": 2, "x": 2, "y": 0}),
                  "origin")
    assert clash.alias_conflicts == [("x", 2, 1)] and clash.artifact is not None
    assert clash.artifact.aliases["x"] == 2
    assert getattr(clash.conflicts[0], "hint", "").startswith("keep yours with `dvx push`")
    other_type = merge(None, _state([("a", t0, False)], {"latest": 0}, kind="dataset"),
                       _state([("a", t0, False)], {"latest": 0}), "origin")
    assert other_type.artifact is None
    assert "type 'model' here and 'dataset' on origin" in other_type.conflicts[0]


def test_merge_reports_an_alias_moved_to_a_version_the_other_side_dropped() -> None:
    """Regression: B moved `best` to v1 while A's retention dropped v1; B's fetch merged
    and the alias vanished without a word (exit 0)."""
    from dvx.artifacts.merge import merge

    t0 = "2026-12-01T00:00:00Z"
    base = _state([("a", t0, False), ("b", t0, False), ("c", t0, False)], {"latest": 2})
    theirs = _state([("a", t0, True), ("b", t0, True), ("c", t0, False)], {"latest": 2}, keep_last=1)
    mine = _state([("a", t0, False), ("b", t0, False), ("c", t0, False)], {"latest": 2, "best": 1})
    got = merge(base, theirs, mine, "origin")
    assert got.artifact is not None and got.artifact.aliases == {"latest": 2}
    assert len(got.conflicts) == 1
    assert "alias best was moved to v1 here, but origin dropped v1" in got.conflicts[0]
    assert "dvx artifacts alias m:vN best" in getattr(got.conflicts[0], "hint", "")
    # the other way round: theirs moved it, mine dropped the version: a note
    back = merge(base, mine, theirs, "origin")
    assert back.artifact is not None and "best" not in back.artifact.aliases and not back.conflicts
    assert any("alias best was moved to v1 on origin, but this repository dropped v1" in n for n in back.notes)


# -- properties: bad input only raises our error ----------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids,
                                                                              max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_reference_text_parses_or_raises_artifact_error(text: str) -> None:
    try:
        ref = parse_reference(text)
    except ArtifactError:
        return
    assert parse_reference(str(ref)) == ref
    assert str(ref) == text  # only canonical spellings are accepted


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["format", "name", "type", "versions", "aliases", "retention", "extra"]), _JSON,
       st.integers(0, 2), st.sampled_from(["version", "id", "kind", "size", "files", "path", "run", "commit",
                                           "created", "dropped"]))
def test_any_damaged_record_raises_only_our_error(key: str, value: object, index: int, field: str) -> None:
    good = json.loads(VECTORS["canonical"])
    top = json.loads(VECTORS["canonical"])
    top[key] = value
    entry = json.loads(VECTORS["canonical"])
    entry["versions"][index][field] = value
    for doc in (top, entry):
        try:
            art = decode_artifact(json.dumps(doc).encode(), "x", "model")
        except (ArtifactError, FormatVersionError):
            continue
        # accepted: then it is a record the spec allows, and it encodes canonically
        assert decode_artifact(encode_artifact(art), "x", "model") == art
    assert decode_artifact(json.dumps(good).encode(), "x", "model").name == "model"
