#!/usr/bin/env bash
# Creates .venv and installs the pinned dependencies; does nothing when they are current.
# Checks the system packages first and says exactly which are missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.laminar-installed"
PYTHON="${PYTHON:-python3.11}"

want="$(cat "$ROOT/requirements.lock" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/laminar" ]; then
    exit 0
fi

missing=()
command -v "$PYTHON" >/dev/null 2>&1 || { command -v python3 >/dev/null 2>&1 && python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' && PYTHON=python3; } || missing+=("python3.11")
if command -v "$PYTHON" >/dev/null 2>&1; then
    "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=("python3-venv")
    "$PYTHON" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' || missing+=("python3-dev")
fi
command -v gcc >/dev/null 2>&1 || missing+=("gcc")
# fastecdsa (pulled in by libp2p) builds from source against GMP.
[ -f /usr/include/gmp.h ] || [ -f /usr/include/x86_64-linux-gnu/gmp.h ] || [ -f /usr/include/aarch64-linux-gnu/gmp.h ] || missing+=("libgmp-dev")
if [ "${#missing[@]}" -gt 0 ]; then
    echo "error: missing system packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "setting up $VENV (first run, or dependencies changed)..." >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip==26.3" "setuptools==75.8.0" "wheel==0.48.0"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.lock"
# The editable install's build backend is chatty; keep its output unless it fails.
if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT" > "$VENV/install.log" 2>&1; then
    cat "$VENV/install.log" >&2
    exit 1
fi
echo "$want" > "$STAMP"
echo "setup done" >&2
