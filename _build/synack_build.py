"""synack's build backend: setuptools' own, plus mypy when the compiled core is asked for.

``SYNACK_MYPYC=1 pip install .`` compiles the modules of :mod:`synack.core` with mypyc, which
ships with mypy (``setup.py`` does the compiling). A pure-Python build needs no mypy, so it is a
build requirement only then: an isolated build fetches it, ``--no-build-isolation`` uses the one
installed. Everything else is setuptools.build_meta, except that an editable install refuses to
compile: C extension modules beside the sources would run instead of the code being edited.
"""

from __future__ import annotations

import os

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the PEP 517 and PEP 660 hooks, unchanged)

MYPY = "mypy>=1.10"
ConfigSettings = dict[str, str | list[str]] | None


def _compiling() -> bool:
    """SYNACK_MYPYC set to anything but "" or "0" (setup.py accepts only "1" and says so)."""
    return os.environ.get("SYNACK_MYPYC", "0") not in ("", "0")


if _compiling():
    # Without this hook a frontend reads the metadata from the wheel it builds (PEP 517), so
    # mypyc, which setup.py runs whenever it is loaded, compiles the core once rather than twice.
    del prepare_metadata_for_build_wheel  # noqa: F821  (bound by the * import above)


def get_requires_for_build_wheel(config_settings: ConfigSettings = None) -> list[str]:
    if _compiling():
        # setuptools would run setup.py to ask it, and setup.py compiles: with mypy not yet there.
        return ["wheel", MYPY]
    return _setuptools.get_requires_for_build_wheel(config_settings)


def _no_editable_compile() -> None:
    if _compiling():
        raise SystemExit(
            "SYNACK_MYPYC=1 builds the compiled core for a regular install (pip install .), not an "
            "editable one: compiled modules beside the sources would run instead of the code you edit. "
            "Unset SYNACK_MYPYC for an editable install (pure Python).")


def get_requires_for_build_editable(config_settings: ConfigSettings = None) -> list[str]:
    _no_editable_compile()
    return _setuptools.get_requires_for_build_editable(config_settings)


def build_editable(wheel_directory: str, config_settings: ConfigSettings = None,
                   metadata_directory: str | None = None) -> str:
    _no_editable_compile()
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
