"""What a synack event loop controls in the process while it runs: the network guard and, in
virtual time, the sources of nondeterminism.

**The network guard.** Code running inside a synack loop reaches synack hosts only. An audit
hook (:func:`sys.addaudithook`, installed once per process, inert outside a guarded thread)
refuses, in the thread that runs the loop, every call that would use the host's real network:
creating an ``AF_INET``/``AF_INET6``/``AF_PACKET`` kernel socket, connecting, binding or sending
with one made elsewhere, and name lookups of anything but an IP literal (``socket.getaddrinfo``,
``gethostbyname``, ``gethostbyaddr``, ``getnameinfo``). Each raises :class:`RealNetworkError`
naming the call. ``AF_UNIX`` and ``AF_NETLINK`` sockets stay allowed: the loop's own self-pipe
is a Unix socket pair, and neither leaves the machine. Other threads are not guarded (a kernel
peer in a helper thread, inside a namespace, is how the live tests talk to synack).

**Determinism in virtual time** (:class:`Determinism`). The simulator gives every run the same
packets and the same clock, but libraries also read the wall clock (aiohttp's ``Date`` header)
and draw random bytes (websockets masks every client frame with ``secrets.token_bytes``). While a
virtual-time loop runs, as deterministic-simulation frameworks do (FoundationDB's simulator,
madsim), it replaces in the whole process:

* ``time.time``/``time.time_ns`` by a wall clock that reads ``epoch + virtual time``;
* ``os.urandom`` and the generator behind ``random.SystemRandom`` and :mod:`secrets` by a stream
  seeded from the network's seed;
* the state of :mod:`random`'s global generator by one seeded from the network's seed,

and restores all of them when the loop stops. ``time.monotonic``, ``time.perf_counter`` and
``datetime.now`` (which reads the clock in C) are left alone.
"""

from __future__ import annotations

import os
import random
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Final

__all__ = ["Determinism", "RealNetworkError", "guarded", "is_guarded"]

_NET_FAMILIES: Final = frozenset(f for f in (socket.AF_INET, socket.AF_INET6,
                                             getattr(socket, "AF_PACKET", None)) if f is not None)
_LOOKUPS: Final = frozenset(("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
                             "socket.gethostbyaddr", "socket.getnameinfo"))
_USES: Final = frozenset(("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"))


class RealNetworkError(RuntimeError):
    """Code inside a synack event loop tried to use the host's real network. Deliberately not an
    ``OSError``: libraries that retry on connection errors must not swallow it."""


_guard = threading.local()
_install_lock = threading.Lock()
_installed = False


def _family_name(family: Any) -> str:
    try:
        return socket.AddressFamily(family).name
    except ValueError:
        return str(family)


def _kind_name(kind: Any) -> str:
    try:
        return socket.SocketKind(kind).name
    except ValueError:
        return str(kind)


def _numeric(host: Any) -> bool:
    """An IP literal (or no host at all): resolving it never leaves the machine."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host.split("%", 1)[0])
    except OSError:
        return False
    return True


def _refuse(call: str, why: str) -> None:
    where = getattr(_guard, "where", "a synack event loop")
    raise RealNetworkError(f"{call} inside {where} would use the host's real network ({why}). Code in a "
                           f"synack loop reaches synack hosts only: use loop.create_connection / "
                           f"asyncio.open_connection / synack.sockets, or run this code outside the loop.")


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not event.startswith("socket.") or not getattr(_guard, "depth", 0):
        return
    if event == "socket.__new__":
        _sock, family, type_, _proto = args
        if family in _NET_FAMILIES:
            _refuse(f"socket.socket({_family_name(family)}, {_kind_name(type_)})", "a kernel socket")
    elif event in _LOOKUPS:
        host = args[0]
        if event == "socket.getnameinfo" and isinstance(host, tuple):
            host = host[0]
        if not _numeric(host):
            _refuse(f"{event}({host!r})", "a name lookup")
    elif event in _USES:
        sock = args[0]
        if getattr(sock, "family", None) in _NET_FAMILIES:
            _refuse(f"{event}({sock!r}, {args[1]!r})", "a kernel socket")


def _install() -> None:
    global _installed
    with _install_lock:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True


class guarded:
    """Context manager: the calling thread may not use the real network inside the block
    (re-entrant; ``where`` names the loop in the error)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self._saved: str | None = None

    def __enter__(self) -> guarded:
        _install()
        self._saved = getattr(_guard, "where", None)
        _guard.where = self.where
        _guard.depth = getattr(_guard, "depth", 0) + 1
        return self

    def __exit__(self, *exc: object) -> None:
        _guard.depth -= 1
        if self._saved is None:
            del _guard.where
        else:
            _guard.where = self._saved


def is_guarded() -> bool:
    """True in a thread that runs a synack loop right now."""
    return bool(getattr(_guard, "depth", 0))


# ---------------------------------------------------------------------------------------------
# Determinism in virtual time
# ---------------------------------------------------------------------------------------------

EPOCH: Final = 1_700_000_000.0  # 2023-11-14T22:13:20Z: what time.time() reads at virtual time 0


class Determinism:
    """While active (a context manager, re-entrant per process), ``time.time`` reads
    ``EPOCH + clock()`` and randomness comes from streams seeded with ``seed`` (see the module
    documentation); everything is restored on exit."""

    _lock = threading.Lock()
    _depth = 0
    _saved: ClassVar[dict[str, Any]] = {}

    def __init__(self, seed: int | str, clock: Callable[[], float]) -> None:
        self.seed = seed
        self.clock = clock

    def __enter__(self) -> Determinism:
        cls = Determinism
        with cls._lock:
            cls._depth += 1
            if cls._depth > 1:
                return self
            entropy = random.Random(f"synack-entropy|{self.seed}")
            clock = self.clock

            def urandom(n: int) -> bytes:
                if n < 0:
                    raise ValueError("negative argument not allowed")
                return entropy.randbytes(n)

            def wall() -> float:
                return EPOCH + clock()

            def wall_ns() -> int:
                return round((EPOCH + clock()) * 1e9)

            cls._saved = {"time": time.time, "time_ns": time.time_ns, "urandom": os.urandom,
                          "_urandom": getattr(random, "_urandom", None), "state": random.getstate()}
            time.time = wall
            time.time_ns = wall_ns
            os.urandom = urandom
            random._urandom = urandom  # type: ignore[attr-defined]  # SystemRandom, secrets
            random.seed(f"synack-random|{self.seed}")
        return self

    def __exit__(self, *exc: object) -> None:
        cls = Determinism
        with cls._lock:
            cls._depth -= 1
            if cls._depth:
                return
            saved = cls._saved
            time.time = saved["time"]
            time.time_ns = saved["time_ns"]
            os.urandom = saved["urandom"]
            if saved["_urandom"] is not None:
                random._urandom = saved["_urandom"]  # type: ignore[attr-defined]
            random.setstate(saved["state"])
            cls._saved = {}
