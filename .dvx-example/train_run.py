"""A tiny training script (numpy only) that records itself as a DVX run.

It reads the tracked dataset (data/), fits a softmax classifier of the label from byte
statistics of each file, logs the loss and accuracy of every step, a histogram of the
weights now and then, and saves the model to the tracked models/model.pt. The run
(config, every point, the summary, the dataset it used and the model it made) becomes
a commit on refs/dvx/runs/<id>, next to the code commit it ran on.

    python train_run.py [--lr 0.5] [--steps 300]
"""

import argparse
import csv
import os

import numpy as np

import dvx

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.5)
parser.add_argument("--steps", type=int, default=300)
args = parser.parse_args()


def features(path: str) -> np.ndarray:
    b = np.frombuffer(open(path, "rb").read(), dtype=np.uint8).astype(np.float64) / 255.0
    return np.array([b.mean(), b.std(), (b > 0.5).mean(), b[:256].mean(), b[-256:].mean(), 1.0])


with open("data/labels.csv") as f:
    rows = list(csv.DictReader(f))
X = np.stack([features(os.path.join("data", "train", r["file"])) for r in rows])
X[:, :-1] = (X[:, :-1] - X[:, :-1].mean(0)) / (X[:, :-1].std(0) + 1e-9)
y = np.array([int(r["label"]) for r in rows])
classes = int(y.max()) + 1

with dvx.init(project="example", config={"lr": args.lr, "steps": args.steps, "model": "softmax"},
              tags=["numpy"]) as run:
    run.use_artifact("data")                          # the dataset, by content id
    run.define_metric("loss", summary="min")
    W = np.zeros((X.shape[1], classes))
    for step in range(args.steps):
        logits = X @ W
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
        acc = float((p.argmax(1) == y).mean())
        grad = X.T @ (p - np.eye(classes)[y]) / len(y)
        W -= args.lr * grad
        run.log({"loss": loss, "acc": acc}, step=step)
        if step % 100 == 0:
            run.log({"weights": dvx.Histogram(W, bins=16)}, step=step)
    os.makedirs("models", exist_ok=True)
    with open("models/model.pt", "wb") as f:
        np.save(f, W)
    run.log_artifact("models/model.pt", type="model")   # the model, stored like `dvx add`
    run.summary["final_acc"] = acc
print(f"run {run.id}: loss {loss:.3f}, accuracy {acc:.2f}, committed as {run.ref}")
