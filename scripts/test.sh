#!/usr/bin/env bash
# The whole test suite: static checks, then pytest twice — the whole suite on the core as Python
# (the editable install), then the tests of the core and of what runs on it in this process on the
# core compiled by mypyc (scripts/build-compiled.sh builds it into build/compiled while the first
# run goes on). Arguments go to both pytest runs, after the compiled run's selection (a -m of yours
# replaces its -m "not live"). pytest's "no tests collected" (exit 5) fails, and so does a failed
# build of the compiled core. SYNACK_TEST_COMPILED=0 leaves out the compiled form (a machine
# without a C compiler); CI does not set it.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check src tests bench setup.py _build
mypy --strict src/synack

# The compiled run: unit, RFC conformance, packetdrill scripts, simulation, fuzzing, pickling,
# the tools on captures of simulated runs. Left to the Python run: the live tests against the
# kernel over TUN (their time is the kernel's, the tools' and real sleeps, and the core they run is
# the one every other test runs), and tests that run no core code or mostly wait on outside tools.
COMPILED_SELECTION=(
  -m "not live"
  --ignore=tests/test_conformance_doc.py  # the conformance document against the tests' names
  --ignore=tests/test_htmlview.py         # HTML and SVG formatting, a Chromium screenshot
  --ignore=tests/test_analyze_tshark.py   # tshark's verdicts on the analyzer's, 40 s of tshark
  --ignore=tests/test_fuzz_bench.py       # bench/fuzz.py: atheris instruments Python code, and its
                                          # snapshots pickle whole hosts (the Python core only)
  --deselect=tests/test_analyze_cli.py::test_dask_local_cluster_gives_the_same_results  # Dask
  --deselect=tests/test_analyze_cli.py::test_dask_unreachable_is_a_clear_error           # a 10 s timeout
  --deselect=tests/test_analyze_cli.py::test_report_in_headless_chromium                 # Chromium
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
start=$SECONDS
SYNACK_EXPECT_COMPILED=0 run_pytest python "$@" || rc_python=$?
took_python=$((SECONDS - start))

rc_compiled=0
took_compiled=0
if [ "$compiled" != 0 ]; then
  if wait "$build_pid"; then
    cat "$build_log"
    start=$SECONDS
    PYTHONPATH="$PWD/build/compiled" SYNACK_EXPECT_COMPILED=1 \
      run_pytest compiled "${COMPILED_SELECTION[@]}" "$@" || rc_compiled=$?
    took_compiled=$((SECONDS - start))
  else
    cat "$build_log" >&2
    echo "test.sh: building the compiled core failed (a C compiler and the Python headers are needed:" \
      "scripts/setup-system.sh; SYNACK_TEST_COMPILED=0 skips the compiled form)" >&2
    rc_compiled=1
  fi
fi
echo "test.sh: core as python: exit $rc_python (${took_python} s);" \
  "compiled: $([ "$compiled" != 0 ] && echo "exit $rc_compiled (${took_compiled} s)" || echo skipped);" \
  "${SECONDS} s in all"
[ "$rc_python" -eq 0 ] && [ "$rc_compiled" -eq 0 ]
