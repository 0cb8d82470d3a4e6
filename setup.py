"""The optional compiled form. The package's metadata is in pyproject.toml; this file only adds
the C extension modules when they are asked for:

    SYNACK_MYPYC=1 pip install .        # synack.core and the capture analyzer's one pass
                                        # compiled with mypyc (needs a C compiler)
    pip install .                       # pure Python, the default: nothing is compiled

The compiled modules behave as the Python ones (the tests run against both forms, see
scripts/test.sh) and are about twice as fast; ``synack --version`` and
``synack.core.compiled()`` tell which form is running. _build/synack_build.py adds mypy to the
build requirements when compiling.
"""

from __future__ import annotations

import os
import pathlib

from setuptools import Extension, setup

ROOT = pathlib.Path(__file__).resolve().parent
CORE = ROOT / "src" / "synack" / "core"
PACKAGE = ROOT / "src" / "synack"

# Outside the core, the modules of the one pass of ``synack analyze`` over a capture (its loop
# runs once per packet: compiled, it reads about twice as many packets a second), and the pcap
# reader it runs on. The rest of synack.analyze (the command line, the outputs, --jobs and
# --dask) runs once per connection or once per run and stays Python.
ANALYZE_COMPILED: tuple[str, ...] = (
    "pcap.py",
    "analyze/engine.py",
    "analyze/conn.py",
    "analyze/states.py",
    "analyze/zeek.py",
    "analyze/frames.py",
    "analyze/model.py",
    "analyze/findings.py",
)

# Modules of synack.core that stay Python in the compiled build, each with the reason.
NOT_COMPILED: dict[str, str] = {
    "_mypyc": "holds the run-time stand-in for mypyc_attr, which compiled code would drop as unreachable",
}


def core_extensions() -> list[Extension]:
    """The mypyc extension modules (the core, then :data:`ANALYZE_COMPILED`), or none for a
    pure-Python build."""
    flag = os.environ.get("SYNACK_MYPYC", "0")
    if flag in ("", "0"):
        return []
    if flag != "1":
        raise SystemExit(f"SYNACK_MYPYC={flag!r}: set it to 1 to compile synack.core with mypyc, "
                         "or to 0 (or leave it unset) for pure Python")
    from mypyc.build import mypycify  # only here: a pure-Python build has no mypy

    modules = [str(p.relative_to(ROOT)) for p in sorted(CORE.glob("*.py")) if p.stem not in NOT_COMPILED]
    modules += [str((PACKAGE / name).relative_to(ROOT)) for name in ANALYZE_COMPILED]
    return mypycify(modules, opt_level="3", group_name="synack_core")


setup(ext_modules=core_extensions())
