"""Regenerate vectors/runs_media.json (protocols/runs.md §4.1): histogram and image
objects, their bytes, file names and the segment reference of each. Written with json,
zlib, struct and blake3 directly, not with dvx.runs, so the tests check the code
against the spec."""

import json
import os
import struct
import zlib

from blake3 import blake3


def histogram(counts, edges, nonfinite):
    return (json.dumps({"counts": counts, "dvx_media": "histogram", "edges": edges, "nonfinite": nonfinite},
                       sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n").encode()


def png(rows, width, height, color):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def ref(obj, data, suffix):
    name = blake3(data).hexdigest() + suffix
    return json.dumps({**obj, "file": name, "size": len(data)}, sort_keys=True, separators=(",", ":")), name


cases = []
# 1. from counts and edges
data = histogram([3, 0, 5], [-1.0, 0.0, 0.5, 2.0], 0)
text, name = ref({"bins": 3, "count": 8, "type": "histogram"}, data, ".hist.json")
cases.append({"what": "histogram from counts and edges", "counts": [3, 0, 5], "edges": [-1.0, 0.0, 0.5, 2.0],
              "bytes": data.decode(), "file": name, "text": text})
# 2. from values: 2 bins over the finite range [0, 3]; NaN and inf counted apart
data = histogram([2, 2], [0.0, 1.5, 3.0], 2)
text, name = ref({"bins": 2, "count": 4, "type": "histogram"}, data, ".hist.json")
cases.append({"what": "histogram of values", "values": [0.0, 1.0, 2.0, 3.0, "nan", "inf"], "bins": 2,
              "bytes": data.decode(), "file": name, "text": text})
# 3. a 2x2 RGB uint8 image
pixels = [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]]
data = png([sum(r, []) for r in pixels], 2, 2, 2)
text, name = ref({"caption": "rgb", "format": "png", "height": 2, "type": "image", "width": 2}, data, ".png")
cases.append({"what": "image from a uint8 H×W×3 array", "pixels": pixels, "dtype": "uint8", "caption": "rgb",
              "bytes_hex": data.hex(), "file": name, "text": text})
# 4. a 1x3 grey float image in 0..1: scaled by 255 and rounded half to even
data = png([[0, 128, 255]], 3, 1, 0)
text, name = ref({"caption": None, "format": "png", "height": 1, "type": "image", "width": 3}, data, ".png")
cases.append({"what": "image from a float H×W array in 0..1", "pixels": [[0.0, 0.5, 1.0]], "dtype": "float64",
              "caption": None, "bytes_hex": data.hex(), "file": name, "text": text})

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs_media.json")
with open(out, "w") as f:
    json.dump({"kinds": {"histogram": 4, "image": 5}, "cases": cases}, f, indent=2, ensure_ascii=False)
    f.write("\n")
