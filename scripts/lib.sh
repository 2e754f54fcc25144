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

# The browser tests (tests/browser) drive Debian's Chromium; nothing downloads a browser at run time.
CHROMIUM=/usr/bin/chromium
ensure_chromium() {
  local packages=()
  [ -x "$CHROMIUM" ] || packages+=(chromium)
  # Chinese text in the screenshots needs a CJK font; Chromium's dependencies bring none.
  if ! command -v fc-list >/dev/null 2>&1 || [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; then
    packages+=(fonts-wqy-microhei)
  fi
  [ "${#packages[@]}" -eq 0 ] && return 0
  local why=""
  if ! command -v apt-get >/dev/null 2>&1; then
    why="apt-get is not available here"
  elif [ "$(id -u)" -ne 0 ]; then
    why="installing packages needs root (sudo apt-get install -y ${packages[*]})"
  fi
  if [ -n "$why" ]; then
    if [ ! -x "$CHROMIUM" ]; then
      echo "The browser tests need $CHROMIUM (Debian's chromium package), and $why." >&2
      return 1
    fi
    echo "NOTICE: no Chinese font, so screenshots of the browser tests show boxes: $why." >&2
    return 0
  fi
  echo "Installing ${packages[*]} for the browser tests (apt-get)..." >&2
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null; }; then
    echo "apt-get could not install ${packages[*]}; the browser tests need $CHROMIUM." >&2
    return 1
  fi
  [ -x "$CHROMIUM" ] || { echo "The chromium package is installed but $CHROMIUM is missing." >&2; return 1; }
}
