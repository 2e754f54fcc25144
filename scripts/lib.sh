# Shared by scripts/start and scripts/test: a virtualenv with the pinned dependencies.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

find_python() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "$candidate"; return 0
    fi
  done
  echo "Python 3.11 is required" >&2; return 1
}

ensure_venv() {
  local python stamp
  python="$(find_python)"
  if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv .venv 2>/dev/null; then
      # Debian splits venv out of the interpreter package.
      echo "Installing python3-venv (needs root)..." >&2
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      rm -rf .venv && "$python" -m venv .venv
    fi
  fi
  stamp=".venv/.requirements.sha256"
  if [ ! -f "$stamp" ] || ! sha256sum --status -c "$stamp" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
    sha256sum requirements.lock > "$stamp"
  fi
  export PATH="$ROOT/.venv/bin:$PATH"
}
