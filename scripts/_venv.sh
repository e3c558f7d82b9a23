# Shared by scripts/demo and scripts/test: make .venv (Python >= 3.11, 3.11 preferred: the lock
# was resolved with it) and bring it to a lock file's exact, hash-checked versions.
# Usage: . scripts/_venv.sh [dev]   (dev: requirements/dev.txt with the test tools; else run.txt)

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PYTHON=$candidate
      break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "Orca needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" "$ROOT/scripts/_sync_venv.py" "$ROOT/requirements/${1:-run}.txt" \
  "$ROOT"/requirements/*.txt
export PATH="$VENV/bin:$PATH"
