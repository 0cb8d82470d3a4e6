"""The frames synack writes with offloads, as the kernel completes them: checksums summed and GSO
frames cut by the kernel itself, and verified by a stack that trusts nothing.

Delivered locally, a frame whose TCP checksum is left to the kernel (``NEEDS_CSUM``) is never
summed: the kernel's own TCP believes it, so a bulk transfer to a kernel socket proves only that
the lengths and GSO fields were right. Here the kernel must finish the frames: one namespace
(created here, removed whatever happens) holds two TUN devices and forwards between them.

* ``synack0``: the sending stack, with offloads (``TunStack(offload=True)``): its checksums are
  partial, its large segments GSO frames (TSO in the core, and runs coalesced by the driver);
* ``synack1``: the receiving stack, without offloads: the device has no checksum or TSO feature,
  so the kernel segments every GSO frame in software and completes every checksum before the
  frame leaves through it, and this stack verifies every checksum in Python (nothing is
  ``checksum_trusted``; a bad one would be dropped and counted as ``bad_checksum``).

Both stacks run in their own threads (``background=True``); every wait is bounded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from typing import Any

import pytest

from synack import sockets
from synack.tun import TunStack, create_netns, remove_netns

pytestmark: list[pytest.MarkDecorator] = [pytest.mark.live]

WAIT = 30.0
SIZE = 4_000_000


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces and TUN)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip) to turn forwarding on in the namespace"
    return None


_REASON = _why_not()
if _REASON is not None:
    pytestmark.append(pytest.mark.skip(reason=_REASON))


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_offload_frames_completed_by_the_kernel_pass_a_stack_verifying_every_checksum(family: str) -> None:
    v6 = family == "ipv6"
    ns = f"synack-fwd-{os.getpid()}-{family}"
    create_netns(ns)
    stacks: list[TunStack] = []
    try:
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                        "net.ipv6.conf.all.forwarding=1"], check=True, timeout=10)
        sender = TunStack(netns=ns, ifname="synack0", offload=True, background=True,
                          addresses=("10.77.0.2", "fd77::2"), kernel_addresses=("10.77.0.1/24", "fd77::1/64"))
        stacks.append(sender)
        receiver = TunStack(netns=ns, ifname="synack1", offload=False, background=True,
                            addresses=("10.88.0.2", "fd88::2"),
                            kernel_addresses=("10.88.0.1/24", "fd88::1/64"))
        stacks.append(receiver)
        there = "fd88::2" if v6 else "10.88.0.2"
        af = sockets.AF_INET6 if v6 else sockets.AF_INET
        data = os.urandom(SIZE)
        got: dict[str, Any] = {}

        lsock = sockets.socket(receiver, af)
        lsock.settimeout(WAIT)
        lsock.bind((there, 5300))
        lsock.listen(1)

        def serve() -> None:
            try:
                conn, _ = lsock.accept()
                conn.settimeout(WAIT)
                h = hashlib.sha256()
                n = 0
                while chunk := conn.recv(1 << 16):
                    h.update(chunk)
                    n += len(chunk)
                got["n"], got["digest"] = n, h.hexdigest()
                conn.close()
            except BaseException as exc:  # reported by the test's thread
                got["error"] = exc

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        s = sockets.socket(sender, af)
        s.settimeout(WAIT)
        s.connect((there, 5300))
        s.sendall(data)
        s.shutdown(sockets.SHUT_WR)
        server.join(WAIT)
        assert not server.is_alive(), "the receiving stack did not see the end of the stream"
        assert "error" not in got, got
        assert got["n"] == SIZE and got["digest"] == hashlib.sha256(data).hexdigest()
        s.close()

        sent, recv = sender.stats(), receiver.stats()
        # The sender left the checksums to the kernel and wrote GSO frames: far fewer writes
        # than the ~2,800 packets the receiver got.
        assert sent.get("tso_segments_out", 0) > 0, sent
        assert sent["device_writes"] * 4 < recv["packets_in"], (sent, recv)
        # ... which the kernel cut into MSS packets and summed: every one passed the receiver's
        # own checksum test (it trusts none).
        assert recv["packets_in"] >= SIZE // 1460
        assert recv.get("host_checksum_trusted", 0) == 0, recv
        assert recv.get("host_bad_checksum", 0) == 0, recv
        # (``host_malformed`` may count the kernel's own MLD reports, which a TUN device that
        # comes up with IPv6 sends: a hop-by-hop header before ICMPv6, not TCP.)
        lsock.close()
    finally:
        for st in stacks:
            st.close()
        remove_netns(ns)
