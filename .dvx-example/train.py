"""Stand-in for a training script: 'fine-tunes' the model by rewriting one region."""

import sys

path = sys.argv[1] if len(sys.argv) > 1 else "models/model.pt"
with open(path, "r+b") as f:
    f.seek(1_000_000)
    f.write(b"\x42" * 4096)  # a small in-place update, like one layer changing
print(f"updated {path}")
