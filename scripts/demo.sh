#!/usr/bin/env bash
# One command from a fresh clone to a finished DecoNoising run on the built-in sample.
# Usage: scripts/demo.sh [deconoising demo options, e.g. --steps 600 --out my-demo]
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=""
if [ -n "${DISPLAY:-}" ] && [ -z "${CI:-}" ]; then EXTRAS=all; fi  # napari only where it can be shown
source scripts/_venv.sh
exec .venv/bin/deconoising demo "$@"
