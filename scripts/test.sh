#!/usr/bin/env bash
# Runs the whole suite: unit tests, then integration tests against the real Docker engine.
# Run scripts/setup.sh first. Extra arguments go to pytest.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
exec "$repo/.venv/bin/python" -m pytest "$@"
