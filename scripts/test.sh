#!/usr/bin/env bash
# The whole test suite: static checks, then pytest twice — on the core as Python (the editable
# install) and on the core compiled by mypyc (scripts/build-compiled.sh builds it into
# build/compiled while the first run goes on). Arguments go to both pytest runs. pytest's "no
# tests collected" (exit 5) fails. SYNACK_TEST_COMPILED=0 leaves out the compiled form.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check src tests bench setup.py _build
mypy --strict src/synack

# Tests that run no code of the core, or that mostly wait on outside tools, run on Python only.
PURE_ONLY=(
  --ignore=tests/test_conformance_doc.py  # the conformance document against the tests' names
  --ignore=tests/test_htmlview.py         # HTML and SVG formatting, a Chromium screenshot
  --ignore=tests/test_live_tools.py       # nc, curl, socat over TUN: the kernel tests cover the core
)

run_pytest() {  # FORM(python|compiled) ARGS...: pytest, exit 5 (nothing collected) made a failure
  local form=$1 rc=0
  shift
  echo "test.sh: pytest, core as $form"
  python -m pytest -q "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests (core as $form): failing" >&2
    rc=1
  fi
  return "$rc"
}

compiled=${SYNACK_TEST_COMPILED:-1}
build_log=build/compiled.log
if [ "$compiled" != 0 ]; then
  mkdir -p build
  bash scripts/build-compiled.sh build/compiled >"$build_log" 2>&1 &
  build_pid=$!
fi

rc_python=0
SYNACK_EXPECT_COMPILED=0 run_pytest python "$@" || rc_python=$?

rc_compiled=0
if [ "$compiled" != 0 ]; then
  if wait "$build_pid"; then
    cat "$build_log"
    PYTHONPATH="$PWD/build/compiled" SYNACK_EXPECT_COMPILED=1 \
      run_pytest compiled "${PURE_ONLY[@]}" "$@" || rc_compiled=$?
  else
    cat "$build_log" >&2
    echo "test.sh: building the compiled core failed (a C compiler and the Python headers are needed:" \
      "scripts/setup-system.sh; SYNACK_TEST_COMPILED=0 skips the compiled form)" >&2
    rc_compiled=1
  fi
fi
echo "test.sh: core as python: exit $rc_python; compiled: $([ "$compiled" != 0 ] && echo "exit $rc_compiled" || echo skipped)"
[ "$rc_python" -eq 0 ] && [ "$rc_compiled" -eq 0 ]
