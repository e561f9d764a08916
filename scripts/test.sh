#!/usr/bin/env bash
# Install everything the tests need and run the whole suite: ruff, mypy, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check dvx tests
echo "== mypy"; mypy dvx
echo "== pytest"; python -m pytest -q -p no:cacheprovider "$@"
