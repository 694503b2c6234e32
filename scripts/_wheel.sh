# Sourced by test.sh --wheel (what CI runs): test what users get from PyPI, not the checkout.
# Builds the sdist and the wheel with the standard front end (the wheel is built from the sdist,
# so a file missing from either fails here), checks their metadata, installs the wheel into a fresh
# environment and leaves it in $VENV for test.sh. Newer Pythons found on the machine get the
# packaging tests only: no CPU build of the pinned torch exists for them on this machine (see README).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
TOOLS=build/venv-tools
BUILD_PINS=(build==1.6.1 twine==7.0.0)

rm -rf dist
if [ ! -x "$TOOLS/bin/python" ]; then "$PYTHON" -m venv "$TOOLS"; fi
"$TOOLS/bin/python" -m pip install -q --disable-pip-version-check "${BUILD_PINS[@]}"
echo "== building sdist and wheel (python -m build)"
"$TOOLS/bin/python" -m build --outdir dist . >build/build.log 2>&1 || { cat build/build.log; exit 1; }
echo "== checking metadata (twine check --strict)"
"$TOOLS/bin/python" -m twine check --strict dist/*

shopt -s nullglob
wheels=(dist/*.whl) sdists=(dist/*.tar.gz)
shopt -u nullglob
if [ ${#wheels[@]} -ne 1 ] || [ ${#sdists[@]} -ne 1 ]; then
  echo "expected one wheel and one sdist in dist/, found: ${wheels[*]} ${sdists[*]}" >&2
  exit 1
fi
# tests/test_packaging.py inspects these archives and checks that the tests import the installed copy.
export DECONOISING_WHEEL="$PWD/${wheels[0]}" DECONOISING_SDIST="$PWD/${sdists[0]}"

newer=()
for v in 3.12 3.13; do
  # A pyenv shim is found on PATH even where it cannot run that version: try each candidate.
  for cand in $(command -v "python$v" || true) "$HOME"/.pyenv/versions/"$v".*/bin/python"$v"; do
    if "$cand" -c "import venv" >/dev/null 2>&1; then newer+=("$cand"); break; fi
  done
done
for py in "${newer[@]}"; do
  ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  env_dir="build/venv-packaging-$ver"
  echo "== Python $ver: packaging tests against the wheel (no torch)"
  rm -rf "$env_dir" && "$py" -m venv "$env_dir"
  # Only what the packaging tests import; the wheel itself without its dependencies (torch).
  "$env_dir/bin/python" -m pip install -q --disable-pip-version-check numpy==2.4.6 npe2==0.10.0 pytest==9.2.0
  "$env_dir/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$DECONOISING_WHEEL"
  "$env_dir/bin/python" -m pytest -q -p no:cacheprovider tests/test_packaging.py
done
if [ ${#newer[@]} -eq 0 ]; then echo "== no Python 3.12/3.13 found: packaging tests run on $("$PYTHON" --version) only"; fi

VENV=build/venv-wheel
rm -rf "$VENV"
PACKAGE="$DECONOISING_WHEEL"
source scripts/_venv.sh
