#!/usr/bin/env bash
# Install DVX (with its Cython accelerator) into ./.venv. Idempotent.
# Usage: scripts/install.sh [extra ...]   e.g. scripts/install.sh test s3
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
extras=""
if [ $# -gt 0 ]; then extras="[$(IFS=,; echo "$*")]"; fi
.venv/bin/python -m pip install -q -e ".${extras}"
# An editable install leaves dvx/ uncompiled; where PYTHONDONTWRITEBYTECODE is set,
# every command would then recompile it (~40 ms). Compile it once, as pip does for
# a regular install.
.venv/bin/python -m compileall -q dvx >/dev/null
.venv/bin/python -c "from dvx.chunking import HAVE_ACCELERATOR as A; import sys; \
print('dvx installed (Cython chunker: %s)' % ('yes' if A else 'NO, slow fallback'))"
