"""What the optional mypyc build needs from the sources, and what it tells at run time.

``SYNACK_MYPYC=1 pip install .`` compiles the modules of this package to C extension modules
with mypyc (setup.py); the default install runs them as Python. Both forms behave the same.

mypyc makes a class of a compiled module a native class, which a class written in Python may
subclass only when the native class allows it. The classes meant to be extended — a congestion
controller, an observer, a TCB or host that models another TCP (``synack demo why-three-way``)
— say so with ``@mypyc_attr(allow_interpreted_subclasses=True)``. mypyc reads that decorator
while compiling and never calls it; in pure Python it is the stand-in below, which changes
nothing, so the core needs no package outside the standard library at run time.

This module stays Python in the compiled build (setup.py's ``NOT_COMPILED``): compiled, its
stand-in would be dropped as unreachable code.
"""

from __future__ import annotations

import sys
from importlib.machinery import EXTENSION_SUFFIXES
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:
    def mypyc_attr(*_flags, **_attrs):
        """The run-time stand-in for ``mypy_extensions.mypyc_attr``: returns the class unchanged."""
        return lambda cls: cls

__all__ = ["compiled_modules", "mypyc_attr"]


def compiled_modules() -> tuple[str, ...]:
    """The modules of ``synack.core`` imported so far that run compiled (C extension modules),
    in name order; empty when the core runs as Python."""
    prefix = __name__.rpartition(".")[0]
    return tuple(sorted(name for name, module in list(sys.modules.items())
                        if (name == prefix or name.startswith(prefix + "."))
                        and (getattr(module, "__file__", None) or "").endswith(tuple(EXTENSION_SUFFIXES))))
