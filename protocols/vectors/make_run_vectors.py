"""Regenerate vectors/runs.json (protocols/runs.md): a record and its canonical bytes,
a segment and the points it holds, and summaries. Written with json and pyarrow
directly, not with dvx.runs, so the tests check the code against the spec."""

import base64
import json
import math
import os
import sys

import pyarrow as pa


def canonical(obj: object) -> bytes:
    def fix(v: object) -> object:
        if isinstance(v, float) and not math.isfinite(v):
            return {"$float": "nan" if v != v else ("inf" if v > 0 else "-inf")}
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    return (json.dumps(fix(obj), sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


SCHEMA = pa.schema([
    ("seq", pa.uint64(), False), ("step", pa.int64(), False), ("time", pa.float64(), False),
    ("key", pa.utf8(), False), ("kind", pa.uint8(), False), ("value", pa.float64()),
    ("text", pa.utf8())], metadata={"dvx.segment": "1"})

POINTS = [  # seq, step, time, key, kind, value, text
    (0, 0, 1700000000.0, "loss", 0, 2.5, None),
    (0, 0, 1700000000.0, "acc", 0, 0.1, None),
    (1, 1, 1700000000.5, "loss", 0, float("nan"), None),
    (2, 0, 1700000001.0, "loss", 0, 1.5, None),          # a restarted step: kept
    (3, 5, 1700000001.5, "loss", 0, float("inf"), None),
    (3, 5, 1700000001.5, "epoch", 1, 1.0, None),
    (4, 5, 1700000002.0, "phase", 3, None, "eval"),
    (5, 2, 1700000002.5, "big", 1, float(2**60 + 1), str(2**60 + 1)),
    (6, 3, 1700000003.0, "flag", 2, 1.0, None),
]


def segment_bytes(points: list, batches: int = 2) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SCHEMA) as w:
        half = len(points) // batches
        for part in (points[:half], points[half:]):
            cols = list(zip(*part))
            w.write_batch(pa.record_batch([pa.array(c, type=f.type) for c, f in zip(cols, SCHEMA)],
                                          schema=SCHEMA))
    return sink.getvalue().to_pybytes()


def main(out_dir: str) -> None:
    record = {
        "dvx_run": 1, "id": "ab12cd34", "name": "baseline", "project": "resnet", "group": None,
        "notes": None, "tags": ["a", "b"], "state": "finished", "exit_code": 0, "signal": None,
        "start_time": 1700000000.0, "end_time": 1700000003.25,
        "config": {"lr": 0.001, "layers": [64, 128], "name": "ünï"},
        "summary": {"loss": 1.5, "acc": 0.1, "weird": float("-inf")},
        "metrics": {"loss": {"summary": "min", "goal": None}},
        "history": {"points": 3, "next_seq": 3, "last_step": 2,
                    "keys": {"loss": {"count": 2, "first_step": 0, "last_step": 2, "min": 1.5,
                                      "max": float("nan"), "last": 1.5}}},
        "code": {"commit": None, "branch": None, "dirty": False, "diff": None, "diff_truncated": False},
        "environment": {"python": "3.11.7"}, "inputs": [], "outputs": [], "files": {},
        "rank": 0, "world_size": 1, "resumed": 0, "session": "0123456789abcdef",
    }
    seg = segment_bytes(POINTS)
    out = {
        "record": {"canonical_utf8": canonical(record).decode()},
        "segment": {
            "schema_fields": [[f.name, str(f.type), f.nullable] for f in SCHEMA],
            "metadata": {"dvx.segment": "1"},
            "stream_base64": base64.b64encode(seg).decode(),
            "points": [list(p[:5]) + [p[5] if p[5] is None or math.isfinite(p[5]) else repr(p[5]), p[6]]
                       for p in POINTS],
            # truncated by a crash: the first batch survives whole
            "truncated_base64": base64.b64encode(seg[:len(seg) - 40]).decode(),
            "truncated_points": 4,
        },
        # what the summary of each key is under each rule (NaN ignored by min/max/mean)
        "summaries": {
            "last": {"loss": "inf", "acc": 0.1, "epoch": 1, "phase": "eval", "big": 2**60 + 1, "flag": True},
            "min": {"loss": 1.5}, "max": {"loss": "inf"}, "mean": {"loss": "inf"},
            "best_maximize": {"loss": "inf"}, "best_minimize": {"loss": 1.5},
        },
    }
    with open(os.path.join(out_dir, "runs.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
