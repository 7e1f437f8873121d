# Sourced by scripts/test and scripts/demo: a project virtualenv with gatekeeper
# installed (editable, with the dev extras), made or refreshed when needed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setting up .venv (first run only)..." >&2
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.gatekeeper-installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' >&2
  rm -f .venv/.gatekeeper-installed-*
  touch "$stamp"
fi
