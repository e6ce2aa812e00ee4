#!/usr/bin/env bash
# The tests that touch archives (import, export, cp) again, with Debian 12's own /usr/bin/python3
# (3.11.2: a tarfile without PEP 706's filters), in a venv of its own. Run scripts/setup.sh first.
# Extra arguments go to pytest.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
python=/usr/bin/python3
if [ ! -x "$python" ]; then
    echo "[test-debian-python] $python is missing: this runs on Debian's own interpreter" >&2
    exit 1
fi
venv="$repo/.venv-debian"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$repo[test]"
"$venv/bin/python" -c 'import sys; print(f"[test-debian-python] {sys.executable}: Python {sys.version.split()[0]}")'
exec "$venv/bin/python" -m pytest -p no:cacheprovider \
    tests/unit/test_archives.py tests/unit/test_archives_swaps.py tests/unit/test_landing.py \
    tests/integration/test_export_import.py tests/integration/test_import_hostile.py \
    tests/integration/test_volume_fidelity.py tests/integration/test_cp.py "$@"
