#!/usr/bin/env bash
# Build the compiled form of synack (synack.core compiled by mypyc, SYNACK_MYPYC=1) into a
# directory of its own, beside the editable install, for the tests and benchmarks to run against:
#
#     bash scripts/build-compiled.sh [DIR]          # DIR defaults to build/compiled
#     PYTHONPATH=build/compiled python -m pytest tests/test_wire.py
#
# DIR gets the whole package (the core as C extension modules, the rest as Python), which comes
# first on the path. The python on PATH builds it, without build isolation: it needs mypy,
# setuptools>=68 and wheel, as `pip install -e '.[test]'` installs them, and a C compiler with
# the Python headers (scripts/setup-system.sh). Nothing is rebuilt while DIR holds a build of the
# same sources with the same python and mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build/compiled}
stamp=$(
  {
    python -c 'import sys, mypy.version; print(sys.version, mypy.version.__version__)'
    find setup.py pyproject.toml _build src/synack -type f -not -path '*/__pycache__/*' -print0 \
      | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
)
if [ -f "$dir/.synack-build" ] && [ "$(cat "$dir/.synack-build")" = "$stamp" ]; then
  echo "build-compiled: $dir is up to date"
  exit 0
fi
rm -rf "$dir" build/lib.* build/bdist.*  # setuptools' staging: no file of an earlier build slips in
start=$SECONDS
SYNACK_MYPYC=1 python -m pip install --quiet --no-build-isolation --no-deps --target "$dir" .
echo "$stamp" >"$dir/.synack-build"
echo "build-compiled: $dir built in $((SECONDS - start)) s ($(python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))'))"
