"""Generate the example's data: a small image-like dataset and a 'model' file.

Deterministic, so every run of the example produces the same ids.
"""

import os
import sys

from blake3 import blake3

root = sys.argv[1] if len(sys.argv) > 1 else "."
for split, n in (("train", 40), ("val", 10)):
    d = os.path.join(root, "data", split)
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        with open(os.path.join(d, f"img_{i:04d}.bin"), "wb") as f:
            f.write(blake3(f"{split}{i}".encode()).digest(length=20_000 + 37 * i))
with open(os.path.join(root, "data", "labels.csv"), "w") as f:
    f.write("file,label\n" + "".join(f"img_{i:04d}.bin,{i % 3}\n" for i in range(40)))
os.makedirs(os.path.join(root, "models"), exist_ok=True)
with open(os.path.join(root, "models", "model.pt"), "wb") as f:
    f.write(blake3(b"weights").digest(length=3_000_000))
