#!/usr/bin/env bash
# Set up everything and run the whole test suite under a virtual X server.
# Usage: scripts/test.sh [--wheel] [pytest arguments]
#   default  tests the checkout, editable-installed in ./.venv (the developer loop)
#   --wheel  builds the sdist and wheel, checks them and tests the installed wheel in a fresh
#            environment (build/venv-wheel); this is what CI runs (.ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
WHEEL_MODE=0
if [ "${1:-}" = --wheel ]; then WHEEL_MODE=1; shift; fi

missing=()
command -v Xvfb >/dev/null 2>&1 || missing+=(xvfb)
for pkg in libxcb-icccm4 libxcb-keysyms1 libgl1 libegl1 libxkbcommon-x11-0 libxcb-cursor0 libdbus-1-3 \
           libfontconfig1 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-image0; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (apt)"
  if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

EXTRAS=testing
if [ "$WHEEL_MODE" = 1 ]; then
  source scripts/_wheel.sh  # sets VENV to the fresh environment holding the installed wheel
else
  source scripts/_venv.sh
fi

# pytest-xvfb starts Xvfb for the session; an inherited offscreen platform could not draw napari's canvas.
unset QT_QPA_PLATFORM
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
echo "== running tests ($VENV)"
exec "$VENV/bin/python" -m pytest "$@"
