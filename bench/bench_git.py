"""Git-integration benchmark: dvx diff on a 100,000-file dataset with 10 changed files,
dvx log over 1,000 commits, and the cost of a hook with nothing to do.

    .venv/bin/python bench/bench_git.py [--quick]

Bars (issue "Git integration"): diff <= 1 s, log of 1,000 commits <= 2 s, idle hook
<= 0.3 s. The same operations with DVC (`dvc diff`) are measured in the same run
where DVC can do them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

from common import DVX, ENV, WORK, best_of, ensure_peers, fresh_repo, run, save, small_files, version_of


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=ENV, check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n_files = 10_000 if args.quick else 100_000
    n_commits = 100 if args.quick else 1000
    peers = ensure_peers("dvc")
    dvc = str(peers / "dvc")
    res: dict[str, object] = {"versions": {"dvx": version_of(DVX + ["--version"]),
                                           "dvc": version_of([dvc, "--version"])},
                              "files": n_files, "commits": n_commits}
    print(json.dumps(res["versions"]))

    # ---- diff: 100k files, 10 changed, between two commits ---------------------------
    out = {}
    for tool in ("dvx", "dvc"):
        repo = fresh_repo(WORK / f"{tool}-diff")
        small_files(repo / "data", n_files, 11)
        if tool == "dvx":
            run(DVX + ["init"], repo)
            run(DVX + ["add", "data"], repo)
            git(repo, "add", "-A")
        else:
            run([dvc, "init", "-q"], repo)
            run([dvc, "add", "-q", "data"], repo)
            git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "v1")
        for i in range(10):
            k = i * (n_files // 10) + 7
            p = repo / "data" / f"part{k // 1000:03d}" / f"f{k:06d}.bin"
            p.write_bytes(os.urandom(2000))
        if tool == "dvx":
            run(DVX + ["add", "data"], repo)
            cmd = DVX + ["diff", "HEAD~1", "HEAD", "--json"]
        else:
            run([dvc, "add", "-q", "data"], repo)
            cmd = [dvc, "diff", "--json", "HEAD~1", "HEAD"]
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "v2")
        t = best_of(3, cmd, repo)
        changed = json.loads(run(cmd, repo)[2])
        out[tool] = (t, changed)
        shutil.rmtree(repo)
    n_dvx = len(out["dvx"][1])
    n_dvc = len(out["dvc"][1].get("modified", [])) if isinstance(out["dvc"][1], dict) else -1
    res["diff"] = {"dvx_s": out["dvx"][0], "dvc_s": out["dvc"][0], "dvx_changes": n_dvx,
                   "dvc_modified": n_dvc}
    print(f"diff {n_files} files, 10 changed: dvx {out['dvx'][0]:.3f} s ({n_dvx} changes), "
          f"dvc {out['dvc'][0]:.3f} s ({n_dvc}); ratio {out['dvc'][0] / out['dvx'][0]:.1f}x; bar dvx <= 1 s")

    # ---- log over 1000 commits ------------------------------------------------------
    repo = fresh_repo(WORK / "dvx-log")
    run(DVX + ["init"], repo)
    (repo / "m.txt").write_text("0")
    run(DVX + ["add", "m.txt"], repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "c0")
    # build history fast: each commit changes the pointer (every 10th) or a code file
    for i in range(1, n_commits):
        if i % 10 == 0:
            (repo / "m.txt").write_text(str(i))
            run(DVX + ["add", "m.txt"], repo)
        (repo / "code.py").write_text(f"x = {i}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"c{i}")
    t_log = best_of(3, DVX + ["log", "m.txt", "--json"], repo)
    versions = len(json.loads(run(DVX + ["log", "m.txt", "--json"], repo)[2]))
    t_log_all = best_of(3, DVX + ["log", "--json"], repo)
    res["log"] = {"commits": n_commits, "versions": versions, "path_s": t_log, "all_s": t_log_all}
    print(f"log over {n_commits} commits ({versions} versions): dvx {t_log:.3f} s for one path, "
          f"{t_log_all:.3f} s for all pointers; bar <= 2 s")

    # ---- idle hooks -------------------------------------------------------------------
    run(DVX + ["hooks", "install"], repo)
    hooks = {}
    for name, hook_args in (("pre-commit", []), ("post-checkout", ["a", "a", "1"]),
                            ("post-merge", ["0"]), ("pre-push", ["origin", "url"])):
        hooks[name] = best_of(5, [str(repo / ".git" / "hooks" / name), *hook_args], repo)
    res["hooks"] = hooks
    print("idle hooks: " + ", ".join(f"{k} {v:.3f} s" for k, v in hooks.items()) + "; bar <= 0.3 s")
    shutil.rmtree(repo)
    save("git" + ("-quick" if args.quick else ""), res)


if __name__ == "__main__":
    main()
