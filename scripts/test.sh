#!/usr/bin/env bash
# Install everything the tests need and run the whole suite: ruff, mypy, pytest.
# Python deps + the Cython build go into ./.venv; Azurite (npm) into ./.cache/azurite.
# The tests start moto (S3), fake-gcs-server (GCS) and Azurite (Azure) on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
install_azurite() {
  echo "installing Azurite (npm) into .cache/azurite"
  rm -rf .cache/azurite
  npm install --silent --no-audit --no-fund --prefix .cache/azurite azurite@3.35.0 >/dev/null
}
azurite_starts() {  # an install can come out incomplete (seen once): prove it runs
  .venv/bin/python -c "from tests.servers import start_azurite; start_azurite().stop()" >/dev/null 2>&1
}
if [ ! -x .cache/azurite/node_modules/.bin/azurite-blob ]; then
  install_azurite
fi
if ! azurite_starts; then
  echo "Azurite does not start; reinstalling it"
  npm cache verify >/dev/null 2>&1 || true
  install_azurite
fi
export PATH="$PWD/.venv/bin:$PATH"
export DVX_REQUIRE_EMULATORS=1  # a server that cannot start fails the run instead of skipping
echo "== ruff"; ruff check dvx tests bench
echo "== mypy"; mypy dvx
echo "== pytest"; python -m pytest -q -p no:cacheprovider "$@"
