"""A pytest plugin for testing your own networked code on synack (installed with the package:
the ``synack_testing`` entry point of ``pytest11``).

Fixtures:

* ``synack_sim`` — a :class:`SimWorld`: a simulated network with a trace, hosts and links you
  add, faults (loss, delay, reordering, partitions, crashes) you can inject from the test or from
  inside the application while it runs, and :meth:`SimWorld.run` to run a coroutine in the
  virtual-time event loop (blocking sockets in threads work on :meth:`SimWorld.stack` too). The
  seed is ``@pytest.mark.synack(seed=N)``, else ``--synack-seed`` (default 0).
* ``synack_tun`` — a :class:`TunLab`: a TUN stack in a private network namespace made for the
  test (root only; skipped with the reason otherwise), with :meth:`TunLab.run` for the real-time
  loop and :meth:`TunLab.kernel` to run a command (``curl``...) on the kernel's side.

When a test that used either fixture fails, the run's pcap (and for the simulator an HTML ladder
diagram per pair of hosts) is written beside the test report — the ``--synack-artifacts``
directory, else the directory of ``--junitxml``, else ``synack-artifacts/`` under the rootdir — and
the paths are added to the failure report.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Coroutine, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from synack import aio
from synack.core.connection import Config
from synack.sim import Link, Network, SimStack
from synack.trace import Trace

__all__ = ["SimWorld", "TunLab"]

_T = TypeVar("_T")
_ReportHook = Generator[None, pytest.TestReport, pytest.TestReport]
_WORLD = pytest.StashKey["SimWorld | TunLab"]()
_serial = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("synack")
    group.addoption("--synack-seed", type=int, default=0, help="seed of the synack_sim network (default 0)")
    group.addoption("--synack-artifacts", default=None,
                    help="where failing synack tests write their pcap and HTML diagrams")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "synack(seed=N): the seed of the synack_sim fixture's network")


class SimWorld:
    """A simulated network for one test (see the module documentation)."""

    def __init__(self, seed: int = 0, *, config: Config | None = None) -> None:
        self.seed = seed
        self.trace = Trace()
        self.net = Network(seed=seed, trace=self.trace)
        self.config = config if config is not None else Config.lab()
        self._loop: aio.VirtualEventLoop | None = None

    # -- building ------------------------------------------------------------------------------

    def host(self, name: str, *addresses: str, config: Config | None = None) -> SimStack:
        """Add a host (addresses default to ``10.0.0.N``); returns its stack."""
        addrs = list(addresses) or [f"10.0.0.{len(self.net.hosts) + 1}"]
        self.net.add_host(name, addrs, config=config or self.config)
        return self.net.stack(name)

    def link(self, a: str, b: str, **kwds: Any) -> tuple[Link, Link]:
        """Join two hosts (``delay``, ``loss``, ``bandwidth``... as :meth:`Network.link`)."""
        return self.net.link(a, b, **kwds)

    def stack(self, name: str) -> SimStack:
        """The stack of a host, for :mod:`synack.sockets` (threads welcome) or the loop."""
        return self.net.stack(name)

    @property
    def now(self) -> float:
        return self.net.now

    # -- running -------------------------------------------------------------------------------

    def run(self, main: Coroutine[Any, Any, _T], *, deterministic: bool = True) -> _T:
        """Run ``main`` in the virtual-time loop over every host of the network."""
        with asyncio.Runner(loop_factory=self._factory(deterministic)) as runner:
            return runner.run(main)

    def _factory(self, deterministic: bool) -> Callable[[], aio.VirtualEventLoop]:
        def make() -> aio.VirtualEventLoop:
            self._loop = aio.VirtualEventLoop(self.net, deterministic=deterministic)
            return self._loop

        return make

    def at(self, t: float, action: Callable[[], object]) -> None:
        """Do ``action()`` at virtual time ``t`` (while the application runs)."""
        self.net.call_at(t, action)

    # -- faults --------------------------------------------------------------------------------

    def _both(self, a: str, b: str) -> tuple[Link, Link]:
        return self.net.links[(a, b)], self.net.links[(b, a)]

    def loss(self, a: str, b: str, p: float) -> None:
        """Lose each packet between ``a`` and ``b`` (both ways) with probability ``p``."""
        for lk in self._both(a, b):
            lk.loss = p

    def delay(self, a: str, b: str, seconds: float, *, jitter: float = 0.0) -> None:
        """Set the one-way delay (and jitter) between ``a`` and ``b``, both ways."""
        for lk in self._both(a, b):
            lk.delay, lk.jitter = seconds, jitter

    def reorder(self, a: str, b: str, p: float, *, extra: float | None = None) -> None:
        """Hold back each packet with probability ``p`` (by ``extra`` seconds), both ways."""
        for lk in self._both(a, b):
            lk.reorder = p
            if extra is not None:
                lk.reorder_delay = extra

    def partition(self, a: str, b: str | None = None, *, seconds: float | None = None) -> None:
        """Cut ``a`` from ``b`` (or from everyone); with ``seconds``, heal after that long."""
        self.net.partition(a, b)
        if seconds is not None:
            self.at(self.net.now + seconds, lambda: self.net.heal(a, b))

    def heal(self, a: str, b: str | None = None) -> None:
        self.net.heal(a, b)

    def crash(self, host: str, *, restart_after: float | None = None) -> None:
        """Crash ``host`` — with the loop running, its tasks, transports and servers too (see
        :meth:`synack.aio.VirtualEventLoop.crash`)."""
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.crash(host, restart_after=restart_after)
        else:
            self.net.crash(host, restart_after=restart_after)

    def restart(self, host: str) -> None:
        self.net.restart(host)

    # -- artifacts -----------------------------------------------------------------------------

    def write_artifacts(self, directory: Path, stem: str) -> list[Path]:
        """The run's pcap and an HTML ladder per linked pair of hosts."""
        from synack.htmlview import render_html

        directory.mkdir(parents=True, exist_ok=True)
        pcap = directory / f"{stem}.pcap"
        self.trace.to_pcap(pcap)
        out = [pcap]
        for a, b in sorted({tuple(sorted(k)) for k in self.net.links}):
            page = directory / f"{stem}.{a}-{b}.html"
            page.write_text(render_html(self.trace, a, b, title=f"{stem}: {a} and {b}"))
            out.append(page)
        return out


class TunLab:
    """A TUN stack in a private network namespace for one test: synack is ``address``
    (10.77.0.2), the kernel ``kernel_address`` (10.77.0.1); every packet stays inside."""

    address = "10.77.0.2"
    kernel_address = "10.77.0.1"

    def __init__(self, ns: str, pcap: Path, *, config: Config | None = None) -> None:
        from synack.tun import TunStack

        self.ns = ns
        self.pcap = pcap
        self.stack = TunStack(netns=ns, pcap=str(pcap), config=config or Config.lab())

    def run(self, main: Coroutine[Any, Any, _T]) -> _T:
        """Run ``main`` in the real-time synack loop over this stack."""
        return aio.run(main, self.stack)

    def kernel(self, *argv: str, timeout: float = 30.0, **kwds: Any) -> subprocess.CompletedProcess[str]:
        """Run a command on the kernel's side (``ip netns exec``), output captured as text."""
        return subprocess.run(["ip", "netns", "exec", self.ns, *argv], capture_output=True, text=True,
                              timeout=timeout, check=False, **kwds)

    def kernel_popen(self, *argv: str, **kwds: Any) -> subprocess.Popen[str]:
        """Start a command on the kernel's side (the test stops it)."""
        return subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], text=True, **kwds)

    def close(self) -> None:
        self.stack.close()

    def write_artifacts(self, directory: Path, stem: str) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        dest = directory / f"{stem}.pcap"
        self.stack.close()  # flushes the pcap
        shutil.copyfile(self.pcap, dest)
        return [dest]


def _why_no_tun() -> str | None:
    if os.geteuid() != 0:
        return "synack_tun needs root (a network namespace and a TUN device)"
    if not os.path.exists("/dev/net/tun"):
        return "synack_tun needs /dev/net/tun"
    if shutil.which("ip") is None:
        return "synack_tun needs iproute2's ip (to run commands in the namespace)"
    return None


@pytest.fixture
def synack_sim(request: pytest.FixtureRequest) -> SimWorld:
    """A simulated network with a trace (see :class:`SimWorld`)."""
    marker = request.node.get_closest_marker("synack")
    seed = marker.kwargs.get("seed") if marker is not None else None
    world = SimWorld(seed if seed is not None else request.config.getoption("--synack-seed"))
    request.node.stash[_WORLD] = world
    return world


@pytest.fixture
def synack_tun(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TunLab]:
    """A TUN stack in a namespace made for the test and removed after it (root only)."""
    why = _why_no_tun()
    if why is not None:
        pytest.skip(why)
    from synack.tun import create_netns, remove_netns

    ns = f"synack-fx-{os.getpid()}-{next(_serial)}"
    create_netns(ns)
    try:
        lab = TunLab(ns, tmp_path / "tun.pcap")
        request.node.stash[_WORLD] = lab
        try:
            yield lab
        finally:
            lab.close()
    finally:
        remove_netns(ns)


def _artifact_dir(config: pytest.Config) -> Path:
    chosen = config.getoption("--synack-artifacts")
    if chosen:
        return Path(chosen)
    xml = getattr(config.option, "xmlpath", None)
    if xml:
        return Path(xml).resolve().parent / "synack-artifacts"
    return config.rootpath / "synack-artifacts"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> _ReportHook:
    report = yield
    world = item.stash.get(_WORLD, None)
    if world is None or not report.failed or call.when == "setup":
        return report
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid)[-120:]
    try:
        paths = world.write_artifacts(_artifact_dir(item.config), stem)
        text = "\n".join(f"  {p}" for p in paths)
        report.sections.append(("synack trace", f"written beside the report:\n{text}"))
        addsection = getattr(report.longrepr, "addsection", None)
        if callable(addsection):
            addsection("synack trace (pcap, HTML ladder)", text)
    except Exception as exc:  # the test's own failure matters more
        report.sections.append(("synack trace", f"could not be written: {exc!r}"))
    return report
