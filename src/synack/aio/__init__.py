"""asyncio on synack: an event loop whose TCP is synack, in real time over TUN and in virtual
time on the simulated network, so that unmodified asyncio code and libraries run on it.

::

    import synack.aio

    synack.aio.run(main(), tun_stack)          # real time: the kernel on the other side of TUN
    synack.aio.run(main(), net)                # virtual time: every host of a simulated network
    with asyncio.Runner(loop_factory=synack.aio.loop_factory(net)) as runner:
        runner.run(main())

Inside, ``loop.create_connection``/``create_server`` (so ``asyncio.open_connection``,
``start_server``, aiohttp's server, websockets, anything built on them), ``loop.getaddrinfo`` and
the ``sock_*`` calls for :class:`synack.sockets.Socket` go to synack. On a simulated network a task
chooses its host with :func:`on` (``with synack.aio.on("server"): ...``) or is started on one with
:func:`spawn`; servers keep the host they were created on for every connection they accept.

* :mod:`synack.aio.loop` — the loops (:class:`SynackEventLoop`, :class:`VirtualEventLoop`), the
  entry points, the virtual-time selector;
* :mod:`synack.aio.conductor` — one network's virtual clock shared with threads that use
  blocking sockets; :class:`Deadlock`;
* :mod:`synack.aio.sandbox` — the network guard (:class:`RealNetworkError`) and the
  determinism of virtual-time runs (wall clock, entropy).
"""

from synack.aio.conductor import Conductor, Deadlock
from synack.aio.loop import (
    SynackEventLoop,
    VirtualEventLoop,
    current_stack,
    loop_factory,
    new_event_loop,
    on,
    run,
    spawn,
)
from synack.aio.sandbox import Determinism, RealNetworkError

__all__ = [
    "Conductor",
    "Deadlock",
    "Determinism",
    "RealNetworkError",
    "SynackEventLoop",
    "VirtualEventLoop",
    "current_stack",
    "loop_factory",
    "new_event_loop",
    "on",
    "run",
    "spawn",
]
