# Sourced by demo.sh and test.sh: make ./.venv with a pinned torch and this package.
#   EXTRAS       pip extras of this package to install (e.g. "testing")
#   TORCH_SPEC   torch requirement, default "torch==2.13.0" (CPU build on Linux). GPU users:
#                TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
#   PYTHON       interpreter for the venv (default python3, needs >= 3.11)
#   VENV         where to make it (default .venv)
#   PACKAGE      what to install instead of the editable checkout (e.g. a built wheel)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
VENV=${VENV:-.venv}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv --help >/dev/null 2>&1 || ! "$PYTHON" -c "import ensurepip" >/dev/null 2>&1; then
    echo "== installing python3-venv (apt)"
    as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv
  fi
  echo "== creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
echo "== installing $TORCH_SPEC"
# shellcheck disable=SC2086
"${PIP[@]}" $TORCH_SPEC
if [ -n "${PACKAGE:-}" ]; then
  echo "== installing $PACKAGE${EXTRAS:+[$EXTRAS]}"
  "${PIP[@]}" "$PACKAGE${EXTRAS:+[$EXTRAS]}"
else
  echo "== installing napari-deconoising${EXTRAS:+[$EXTRAS]} (editable)"
  "${PIP[@]}" -e ".${EXTRAS:+[$EXTRAS]}"
fi
