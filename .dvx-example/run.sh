#!/usr/bin/env bash
# The DVX example, end to end, in a fresh temporary git repository:
#   init, add, status, commit, change a file, add again, diff, log, a trip back in
#   history, an old version of the dataset read from Python with dvx.open, fsck, push to
#   a local-directory remote, and a teammate's clone + pull; then a tiny numpy training
#   script logged as a run (dvx runs list / show), an evaluation run that uses its model,
#   and the lineage of the model (dvx lineage).
# Installs DVX into ./.venv first. Usage: bash .dvx-example/run.sh [WORKDIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
top="$(dirname "$here")"
bash "$top/scripts/install.sh" example >/dev/null
export PATH="$top/.venv/bin:$PATH"
work="${1:-$(mktemp -d /tmp/dvx-example.XXXXXX)}"
mkdir -p "$work" && cd "$work"
export GIT_AUTHOR_NAME="${GIT_AUTHOR_NAME:-DVX Example}" GIT_AUTHOR_EMAIL="${GIT_AUTHOR_EMAIL:-example@dvx.invalid}"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
# shellcheck source=steps.sh
source "$here/steps.sh"  # step CMD...: prints `$ CMD` (quoted, so it can be pasted), runs it

cp "$here/train.py" "$here/make_data.py" "$here/train_run.py" "$here/eval_run.py" .
git init -q -b main .
python make_data.py .
step dvx init
step dvx remote add origin "$work.remote" --default
step dvx add data models/model.pt
step cat models/model.pt.dvx
step dvx status
step dvx commit -a -m "first model and dataset"
step git log --oneline
step python train.py models/model.pt
step dvx status
step dvx diff
step dvx add models/model.pt
step dvx diff
step dvx commit -m "fine-tuned model"
step du -sh .dvx/store
step dvx log models/model.pt
echo "# a trip back in history:"
step git checkout -q HEAD~1
step dvx checkout
step dvx status
step git checkout -q main
step dvx checkout
step dvx ls
echo "# a label is fixed; the old labels stay readable from Python, without a checkout (dvx.open):"
step python -c 'p = "data/labels.csv"; t = open(p).read(); open(p, "w").write(t.replace("img_0001.bin,1", "img_0001.bin,2"))'
step dvx commit -m "fix the label of img_0001" data
step python -c 'import dvx
with dvx.open("data/labels.csv", rev="HEAD~1", mode="r") as f:
    old = dict(line.split(",") for line in f.read().split())
new = dict(line.split(",") for line in dvx.read("data/labels.csv", mode="r").split())
print("img_0001.bin: label", old["img_0001.bin"], "at HEAD~1 (read with dvx.open), now", new["img_0001.bin"])'
step dvx ls data --rev HEAD~1
step dvx fsck
step git fsck --strict
echo "# share it: push the data to the remote (a plain directory here; s3://, gs://, az:// work alike)"
step dvx push
step dvx push
echo "# a teammate clones the code and pulls the data:"
step git clone -q "$work" "$work.clone"
cd "$work.clone"
step dvx pull
step dvx status
step cmp models/model.pt "$work/models/model.pt"
step dvx fsck --remote origin
echo "# experiments: train a tiny numpy model; the script logs a run (dvx.init / run.log)"
cd "$work"
step git add train_run.py
step dvx commit -m "training script"
step python train_run.py --lr 0.5
step dvx runs list
run_id="$(dvx runs list --json | python -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')"
step dvx runs show "$run_id"
step git log --oneline -2 "refs/dvx/runs/$run_id"
step git show --stat --format=%s "refs/dvx/runs/$run_id"
step dvx status
echo "# lineage: a second run evaluates the model the first one made; then where the model came from and went"
step git add eval_run.py
step dvx commit -m "evaluation script"
step python eval_run.py
step dvx lineage models/model.pt --both
echo
echo "example finished: work tree $work, remote $work.remote, clone $work.clone"
