"""Evaluate the model the training run made, as a second DVX run.

It uses the tracked model (models/model.pt, by content id: the bytes the training run
logged) and the dataset, measures the accuracy of the model on every file, and logs a
report (eval/report.json) as its output. `dvx lineage models/model.pt --both` then shows
the whole chain: data -> training run -> model -> this evaluation run -> report.

    python eval_run.py
"""

import csv
import json
import os

import numpy as np

import dvx


def features(path: str) -> np.ndarray:
    b = np.frombuffer(open(path, "rb").read(), dtype=np.uint8).astype(np.float64) / 255.0
    return np.array([b.mean(), b.std(), (b > 0.5).mean(), b[:256].mean(), b[-256:].mean(), 1.0])


with open("data/labels.csv") as f:
    rows = list(csv.DictReader(f))
X = np.stack([features(os.path.join("data", "train", r["file"])) for r in rows])
X[:, :-1] = (X[:, :-1] - X[:, :-1].mean(0)) / (X[:, :-1].std(0) + 1e-9)
y = np.array([int(r["label"]) for r in rows])

with dvx.init(project="example", name="evaluation", tags=["eval"]) as run:
    run.use_artifact("models/model.pt")                 # the model the training run logged
    run.use_artifact("data")
    with open("models/model.pt", "rb") as f:
        W = np.load(f)
    acc = float(((X @ W).argmax(1) == y).mean())
    run.summary["accuracy"] = acc
    os.makedirs("eval", exist_ok=True)
    with open("eval/report.json", "w") as f:
        json.dump({"accuracy": acc, "files": len(y)}, f, indent=2)
    run.log_artifact("eval/report.json", type="report")
print(f"run {run.id}: accuracy {acc:.2f} on {len(y)} files, committed as {run.ref}")
