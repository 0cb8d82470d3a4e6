"""What the optional mypyc build needs from the sources, and what it tells at run time.

``SYNACK_MYPYC=1 pip install .`` compiles the modules of this package to C extension modules
with mypyc (setup.py); the default install runs them as Python. Both forms behave the same.

mypyc makes a class of a compiled module a native class, which a class written in Python may
subclass only when the native class allows it. The classes meant to be extended — a congestion
controller, an observer, a TCB or host that models another TCP (``synack demo why-three-way``)
— say so with ``@mypyc_attr(allow_interpreted_subclasses=True)``. mypyc reads that decorator
while compiling and never calls it; in pure Python it is the stand-in below, which changes
nothing, so the core needs no package outside the standard library at run time.

A frozen dataclass compiled by mypyc cannot be unpickled or copied on its own;
:func:`picklable_frozen_dataclasses`, which the package calls once it has imported its modules,
registers each with copyreg (in the compiled form only).

This module stays Python in the compiled build (setup.py's ``NOT_COMPILED``): compiled, its
stand-in would be dropped as unreachable code.
"""

from __future__ import annotations

import copyreg
import dataclasses
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:
    def mypyc_attr(*_flags, **_attrs):
        """The run-time stand-in for ``mypy_extensions.mypyc_attr``: returns the class unchanged."""
        return lambda cls: cls

__all__ = ["compiled_modules", "mypyc_attr", "picklable_frozen_dataclasses"]


def compiled_modules(package: str = "") -> tuple[str, ...]:
    """The modules of ``package`` (default: ``synack.core``; ``synack`` for every compiled
    module of the project) imported so far that run compiled (C extension modules), in name
    order; empty when they run as Python."""
    prefix = package or __name__.rpartition(".")[0]
    return tuple(sorted(name for name, module in list(sys.modules.items())
                        if (name == prefix or name.startswith(prefix + "."))
                        and (getattr(module, "__file__", None) or "").endswith(tuple(EXTENSION_SUFFIXES))))


def picklable_frozen_dataclasses(package: str = "") -> None:
    """Make the frozen dataclasses of the compiled modules picklable and copyable again.

    mypyc restores a pickled or copied object attribute by attribute with ``setattr``, which a
    frozen dataclass refuses (``FrozenInstanceError``), so a record or an option could not cross
    to another process (``synack drill -j``) or be copied. For each frozen dataclass defined in a
    compiled module of the core, copyreg is told to rebuild it the way the Python form's state
    holds it: the class called with its fields, every one of which is an ``__init__`` argument
    (checked here). Modules that run as Python are left alone. ``package`` as for
    :func:`compiled_modules` (``synack.analyze`` and ``synack.pcap`` call it for their own)."""
    for name in compiled_modules(package):
        module = sys.modules[name]
        for cls in list(vars(module).values()):
            # (typeshed does not declare the __dataclass_params__ that dataclasses sets)
            if (isinstance(cls, type) and cls.__module__ == name and dataclasses.is_dataclass(cls)
                    and cls.__dataclass_params__.frozen):  # type: ignore[attr-defined]
                if not all(f.init for f in dataclasses.fields(cls)):
                    raise TypeError(f"{name}.{cls.__qualname__}: a field outside __init__ cannot be rebuilt")
                copyreg.pickle(cls, _rebuild)


def _rebuild(obj: Any) -> tuple[type, tuple[Any, ...]]:
    """``obj``'s class and the values of its fields, in order: what copyreg calls to recreate it."""
    return type(obj), tuple(getattr(obj, f.name) for f in dataclasses.fields(obj))
