"""Artifacts travel (protocols/artifacts.md §8): `dvx push` / `git push` (pre-push hook)
send artifact refs after their data, `dvx fetch` / `dvx pull` bring them, merging what
merges cleanly and reporting true conflicts with both sides kept. Two real clones, a
bare git remote and a directory DVX remote, checked with the git CLI."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import git, pseudo_random, run_dvx, write


@pytest.fixture
def two_clones(repo_dir: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A (repo_dir) and B: clones of one bare git remote (``origin``), sharing a
    directory DVX remote named in the committed config; A has logged model v0 and v1
    (best = v0) and pushed; B has pulled."""
    bare = tmp_path / "code.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    run_dvx("remote", "add", "store", str(tmp_path / "data-remote"), "--default", cwd=repo_dir)
    write(repo_dir / "train.py", "print('train')\n")
    git("add", "-A", cwd=repo_dir)
    git("commit", "-qm", "code", cwd=repo_dir)
    git("remote", "add", "origin", str(bare), cwd=repo_dir)
    git("push", "-q", "-u", "origin", "main", cwd=repo_dir)
    for i in range(2):
        write(repo_dir / "model.bin", pseudo_random(40_000, i))
        run_dvx("artifacts", "add", "model.bin", "--name", "model", "--type", "model", cwd=repo_dir)
    run_dvx("artifacts", "alias", "model:v0", "best", cwd=repo_dir)
    rep = json.loads(run_dvx("push", "--json", cwd=repo_dir).stdout)
    assert rep["artifacts_pushed"] == ["model"], rep
    b = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", str(bare), str(b)], check=True, capture_output=True)
    got = json.loads(run_dvx("pull", "--json", cwd=b).stdout)
    assert got["artifacts_fetched"] == ["model"] and not got["errors"], got
    return repo_dir, b, bare


def show(cwd: Path, ref: str = "model") -> dict:  # type: ignore[type-arg]
    return json.loads(run_dvx("artifacts", "show", ref, "--json", cwd=cwd).stdout)  # type: ignore[no-any-return]


def test_push_then_clone_pull_brings_artifacts_and_their_data(two_clones: tuple[Path, Path, Path],
                                                              tmp_path: Path) -> None:
    a, b, bare = two_clones
    sha = git("rev-parse", "refs/dvx/artifacts/model", cwd=a).strip()
    listed = git("ls-remote", str(bare), "refs/dvx/artifacts/*", cwd=a).split()
    assert listed == [sha, "refs/dvx/artifacts/model"]
    assert git("rev-parse", "refs/dvx/artifacts/model", cwd=b).strip() == sha
    assert show(b)["aliases"] == {"best": 0, "latest": 1}
    run_dvx("artifacts", "get", "model:best", "-o", str(tmp_path / "best.bin"), cwd=b)
    assert (tmp_path / "best.bin").read_bytes() == pseudo_random(40_000, 0)
    # nothing new either way
    assert json.loads(run_dvx("push", "--json", cwd=a).stdout)["artifacts_pushed"] == []
    assert json.loads(run_dvx("fetch", "--json", cwd=b).stdout)["artifacts_fetched"] == []
    # a fast-forward: A moves an alias, B fetches it
    run_dvx("artifacts", "alias", "model:v1", "best", cwd=a)
    run_dvx("push", cwd=a)
    assert json.loads(run_dvx("fetch", "--json", cwd=b).stdout)["artifacts_fetched"] == ["model"]
    assert show(b)["aliases"]["best"] == 1


def test_get_fetches_a_version_the_local_store_lacks(two_clones: tuple[Path, Path, Path],
                                                     tmp_path: Path) -> None:
    _a, _b, bare = two_clones
    c = tmp_path / "c"
    subprocess.run(["git", "clone", "-q", str(bare), str(c)], check=True, capture_output=True)
    git("fetch", "-q", "origin", "refs/dvx/artifacts/*:refs/dvx/artifacts/*", cwd=c)  # refs only, no data
    got = json.loads(run_dvx("artifacts", "get", "model:v1", "-o", str(tmp_path / "v1.bin"), "--json",
                             cwd=c).stdout)
    assert got["fetched"] is True
    assert (tmp_path / "v1.bin").read_bytes() == pseudo_random(40_000, 1)


def test_alias_moved_on_both_sides_conflicts_on_push_and_fetch_keeps_both(
        two_clones: tuple[Path, Path, Path]) -> None:
    a, b, bare = two_clones
    run_dvx("artifacts", "alias", "model:v1", "best", cwd=a)
    run_dvx("push", cwd=a)
    theirs = git("rev-parse", "refs/dvx/artifacts/model", cwd=a).strip()
    write(b / "model.bin", pseudo_random(40_000, 7))
    run_dvx("artifacts", "add", "model.bin", "--name", "model", "--type", "model", "--alias", "best", cwd=b)
    mine = git("rev-parse", "refs/dvx/artifacts/model", cwd=b).strip()
    proc = run_dvx("push", cwd=b, check=False)
    assert proc.returncode == 1
    assert ("error: artifact model: alias best was moved to v2 here and to v1 on origin; not pushed"
            in proc.stderr)
    assert "hint: run `dvx fetch`" in proc.stderr
    assert git("ls-remote", str(bare), "refs/dvx/artifacts/model", cwd=b).split()[0] == theirs  # untouched
    proc = run_dvx("fetch", "--json", cwd=b, check=False)
    got = json.loads(proc.stdout)
    assert proc.returncode == 1 and got["artifacts_fetched"] == ["model"]
    assert any("alias best was moved to v2 here and to v1 on origin; kept v2" in e for e in got["errors"])
    # both sides recoverable: the merge commit's parents are mine and theirs
    merged = git("rev-parse", "refs/dvx/artifacts/model", cwd=b).strip()
    assert git("rev-parse", f"{merged}^1", f"{merged}^2", cwd=b).split() == [mine, theirs]
    assert show(b)["aliases"] == {"best": 2, "latest": 2}
    assert "conflict on alias best: kept v2, theirs v1" in git("log", "-1", "--format=%s", merged, cwd=b)
    # B keeps its choice by pushing (a fast-forward now); A fetches it
    rep = json.loads(run_dvx("push", "--json", cwd=b).stdout)
    assert rep["artifacts_pushed"] == ["model"]
    run_dvx("fetch", cwd=a)
    assert show(a)["aliases"] == {"best": 2, "latest": 2}
    run_dvx("artifacts", "get", "model:v2", "-o", str(a / "v2.bin"), cwd=a)
    assert (a / "v2.bin").read_bytes() == pseudo_random(40_000, 7)


def test_versions_added_on_both_sides_are_renumbered_and_disjoint_aliases_merge(
        two_clones: tuple[Path, Path, Path]) -> None:
    a, b, _bare = two_clones
    write(a / "model.bin", pseudo_random(40_000, 20))
    run_dvx("artifacts", "add", "model.bin", "--name", "model", "--type", "model", cwd=a)
    run_dvx("artifacts", "alias", "model:v0", "prod", cwd=a)
    run_dvx("push", cwd=a)
    time.sleep(1.1)  # B logs later: its version is the latest after the merge
    write(b / "model.bin", pseudo_random(40_000, 30))
    run_dvx("artifacts", "add", "model.bin", "--name", "model", "--type", "model", "--alias", "candidate",
            cwd=b)
    write(b / "same.bin", pseudo_random(40_000, 20))  # the same bytes A logged as v2
    run_dvx("artifacts", "add", "same.bin", "--name", "model", "--type", "model", cwd=b)
    assert [v["id"] for v in show(b)["versions"]][2] != [v["id"] for v in show(a)["versions"]][2]
    proc = run_dvx("push", cwd=b, check=False)
    assert proc.returncode == 1
    assert "origin has 1 new version(s) you have not fetched; not pushed" in proc.stderr
    got = json.loads(run_dvx("fetch", "--json", cwd=b).stdout)
    assert not got["errors"], got
    assert got["artifacts_notes"] == ["artifact model: origin added versions too; yours were renumbered after "
                                      "theirs (v2 is now v3)"]
    art = show(b)
    ids_a = [v["id"] for v in show(a)["versions"]]
    assert [v["id"] for v in art["versions"]][:3] == ids_a  # theirs keep their numbers
    assert len(art["versions"]) == 4  # B's same.bin is A's v2, not a new version
    assert art["versions"][3]["id"] == pseudo_id(b, "model.bin")
    assert art["aliases"] == {"best": 0, "candidate": 3, "prod": 0, "latest": 2}
    run_dvx("push", cwd=b)
    run_dvx("fetch", cwd=a)
    assert show(a) == show(b)


def pseudo_id(cwd: Path, path: str) -> str:
    for line in (cwd / (path + ".dvx")).read_text().splitlines():
        if line.startswith("id: "):
            return line[4:]
    raise AssertionError("no id")


def test_git_push_hook_sends_artifacts(two_clones: tuple[Path, Path, Path]) -> None:
    a, b, bare = two_clones
    run_dvx("hooks", "install", cwd=a)
    write(a / "model.bin", pseudo_random(40_000, 3))
    run_dvx("artifacts", "add", "model.bin", "--name", "model", "--type", "model", cwd=a)
    write(a / "train.py", "print('train v2')\n")
    git("commit", "-qam", "v2", cwd=a)
    proc = subprocess.run(["git", "push", "origin", "main"], cwd=a, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pushed 1 artifact (refs/dvx/artifacts/*)" in proc.stderr
    sha = git("rev-parse", "refs/dvx/artifacts/model", cwd=a).strip()
    assert git("ls-remote", str(bare), "refs/dvx/artifacts/model", cwd=a).split()[0] == sha
    run_dvx("fetch", cwd=b)
    run_dvx("artifacts", "get", "model", "-o", str(b / "v2.bin"), cwd=b)
    assert (b / "v2.bin").read_bytes() == pseudo_random(40_000, 3)


def test_hostile_artifact_refs_on_the_git_remote_are_refused(two_clones: tuple[Path, Path, Path],
                                                             tmp_path: Path) -> None:
    a, _b, bare = two_clones
    sha = git("rev-parse", "refs/dvx/artifacts/model", cwd=a).strip()
    for bad in ("refs/dvx/artifacts/nested/x", "refs/dvx/artifacts/-dash", "refs/dvx/artifacts/other"):
        git("update-ref", bad, sha, cwd=bare)  # "other" holds an artifact.json that names "model"
    c = tmp_path / "c"
    subprocess.run(["git", "clone", "-q", str(bare), str(c)], check=True, capture_output=True)
    got = json.loads(run_dvx("fetch", "--json", cwd=c, check=False).stdout)
    assert got["artifacts_fetched"] == ["model"]
    assert sum("is refused" in e for e in got["errors"]) == 3, got["errors"]
    assert git("for-each-ref", "--format=%(refname)", "refs/dvx", cwd=c).split() == ["refs/dvx/artifacts/model"]


def test_a_forged_record_that_contradicts_its_pointers_does_not_replace_the_local_ref(
        two_clones: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Regression: a teammate's commit on top of the artifact ref whose artifact.json
    names other ids (or another kind or size) than its pointer files passed the JSON
    checks, fast-forwarded the local ref, and only then was found damaged: v0 could no
    longer be read here."""
    from tests.test_artifacts import commit_blob

    a, b, bare = two_clones
    good = git("rev-parse", "refs/dvx/artifacts/model", cwd=b).strip()
    for field, value in (("id", "ab" * 32), ("kind", "dir"), ("size", 10**30)):
        doc = json.loads(git("show", f"{good}:artifact.json", cwd=a))
        doc["versions"][0][field] = value
        files = {"artifact.json": json.dumps(doc).encode()}
        for v in (0, 1):
            files[f"versions/v{v}.dvx"] = git("show", f"{good}:versions/v{v}.dvx", cwd=a).encode()
        commit_blob(a, "refs/dvx/artifacts/model", files, parent=good)
        git("push", "-q", "-f", "origin", "refs/dvx/artifacts/model", cwd=a)
        got = json.loads(run_dvx("fetch", "--json", cwd=b, check=False).stdout)
        assert got["artifacts_fetched"] == [] and any("is refused" in e for e in got["errors"]), (field, got)
        assert git("rev-parse", "refs/dvx/artifacts/model", cwd=b).strip() == good, field
    run_dvx("artifacts", "get", "model:v0", "-o", str(tmp_path / "v0.bin"), cwd=b)
    assert (tmp_path / "v0.bin").read_bytes() == pseudo_random(40_000, 0)
    # and push does not send B round in circles ("fetch first", which refuses it): it
    # names the damage and the way out
    proc = run_dvx("push", cwd=b, check=False)
    assert proc.returncode == 1 and "origin's ref is damaged" in proc.stderr, proc.stderr
    assert "git push --force origin refs/dvx/artifacts/model" in proc.stderr
    git("push", "-q", "--force", "origin", "refs/dvx/artifacts/model", cwd=b)
    assert json.loads(run_dvx("fetch", "--json", cwd=a, check=False).stdout)["artifacts_fetched"] == []


def test_git_push_of_an_artifact_ref_by_hand_after_retention_dropped_versions(
        two_clones: tuple[Path, Path, Path]) -> None:
    """Regression: the pre-push hook pushed the data of every commit of the artifact's
    history, so a version retention had dropped (its data collected) failed the push."""
    a, b, bare = two_clones
    run_dvx("hooks", "install", cwd=a)
    for seed in (4, 5):  # v2 is never pushed, then dropped and collected
        write(a / "model.bin", pseudo_random(40_000, seed))
        run_dvx("artifacts", "add", "model.bin", "--name", "model", "--type", "model", cwd=a)
    run_dvx("artifacts", "retention", "model", "--keep-last", "1", "--no-keep-aliased", cwd=a)
    rep = json.loads(run_dvx("gc", "--grace", "0", "--json", cwd=a).stdout)
    assert [d["version"] for d in rep["artifact_versions_dropped"]] == [0, 1, 2]
    proc = subprocess.run(["git", "push", "origin", "refs/dvx/artifacts/model"], cwd=a, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    sha = git("rev-parse", "refs/dvx/artifacts/model", cwd=a).strip()
    assert git("ls-remote", str(bare), "refs/dvx/artifacts/model", cwd=a).split()[0] == sha
    run_dvx("fetch", cwd=b)
    assert [v["dropped"] for v in show(b)["versions"]] == [True, True, True, False]
    run_dvx("artifacts", "get", "model", "-o", str(b / "v3.bin"), cwd=b)
    assert (b / "v3.bin").read_bytes() == pseudo_random(40_000, 5)


def test_an_artifact_created_on_both_sides_with_other_types_is_a_clear_conflict(
        two_clones: tuple[Path, Path, Path]) -> None:
    a, b, _bare = two_clones
    write(a / "d.csv", "x\n")
    run_dvx("artifacts", "add", "d.csv", "--name", "data", "--type", "dataset", cwd=a)
    run_dvx("push", cwd=a)
    write(b / "d.bin", "y")
    run_dvx("artifacts", "add", "d.bin", "--name", "data", "--type", "raw", cwd=b)
    mine = git("rev-parse", "refs/dvx/artifacts/data", cwd=b).strip()
    proc = run_dvx("push", cwd=b, check=False)
    assert proc.returncode == 1
    assert "error: artifact data has type 'raw' here and 'dataset' on origin; not pushed" in proc.stderr
    proc = run_dvx("fetch", cwd=b, check=False)
    assert proc.returncode == 1 and "type 'raw' here and 'dataset' on origin" in proc.stderr
    assert git("rev-parse", "refs/dvx/artifacts/data", cwd=b).strip() == mine  # kept, nothing lost
