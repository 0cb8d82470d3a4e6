"""The symbols a TCP script uses, with the values Linux gives them (scripts are written against the
Linux ABI; ``../shared/docs/packetdrill-language.md``, "System-call lines" and "Code blocks").

The numbers are spelled out here rather than read from Python's :mod:`socket` module so that the
virtual-clock runner means the same thing on every platform; ``errno`` names come from
:mod:`errno`, whose values on Linux are the kernel's.
"""

from __future__ import annotations

import errno as _errno
from types import MappingProxyType
from typing import Final

from synack.core.records import State

__all__ = [
    "CONSTANTS",
    "ERRNO",
    "ERRNO_NAMES",
    "LINUX_STATE",
    "STATE_NAMES",
    "errno_name",
    "lookup",
]

AF_INET: Final = 2
AF_INET6: Final = 10
SOCK_STREAM: Final = 1
SOCK_NONBLOCK: Final = 0o4000
SOCK_CLOEXEC: Final = 0o2000000
IPPROTO_IP: Final = 0
IPPROTO_TCP: Final = 6
SOL_SOCKET: Final = 1
SOL_TCP: Final = 6
O_NONBLOCK: Final = 0o4000
O_RDWR: Final = 2
F_GETFL: Final = 3
F_SETFL: Final = 4

_SOCKET: Final = {
    "AF_INET": AF_INET, "AF_INET6": AF_INET6, "PF_INET": AF_INET, "PF_INET6": AF_INET6,
    "SOCK_STREAM": SOCK_STREAM, "SOCK_NONBLOCK": SOCK_NONBLOCK, "SOCK_CLOEXEC": SOCK_CLOEXEC,
    "IPPROTO_IP": IPPROTO_IP, "IPPROTO_TCP": IPPROTO_TCP, "SOL_SOCKET": SOL_SOCKET, "SOL_TCP": SOL_TCP,
    "SO_DEBUG": 1, "SO_REUSEADDR": 2, "SO_TYPE": 3, "SO_ERROR": 4, "SO_DONTROUTE": 5, "SO_BROADCAST": 6,
    "SO_SNDBUF": 7, "SO_RCVBUF": 8, "SO_KEEPALIVE": 9, "SO_OOBINLINE": 10, "SO_PRIORITY": 12,
    "SO_LINGER": 13, "SO_REUSEPORT": 15, "SO_RCVLOWAT": 18, "SO_SNDLOWAT": 19, "SO_RCVTIMEO": 20,
    "SO_SNDTIMEO": 21, "SO_SNDBUFFORCE": 32, "SO_RCVBUFFORCE": 33, "SO_ZEROCOPY": 60,
    "TCP_NODELAY": 1, "TCP_MAXSEG": 2, "TCP_CORK": 3, "TCP_KEEPIDLE": 4, "TCP_KEEPINTVL": 5,
    "TCP_KEEPCNT": 6, "TCP_SYNCNT": 7, "TCP_LINGER2": 8, "TCP_DEFER_ACCEPT": 9, "TCP_WINDOW_CLAMP": 10,
    "TCP_INFO": 11, "TCP_QUICKACK": 12, "TCP_CONGESTION": 13, "TCP_MD5SIG": 14,
    "TCP_THIN_LINEAR_TIMEOUTS": 16,
    "TCP_USER_TIMEOUT": 18, "TCP_REPAIR": 19, "TCP_FASTOPEN": 23, "TCP_TIMESTAMP": 24,
    "TCP_NOTSENT_LOWAT": 25, "TCP_CC_INFO": 26, "TCP_SAVE_SYN": 27, "TCP_FASTOPEN_CONNECT": 30,
    "TCP_ULP": 31, "TCP_ZEROCOPY_RECEIVE": 35, "TCP_INQ": 36, "TCP_TX_DELAY": 37,
    "F_GETFD": 1, "F_SETFD": 2, "F_GETFL": F_GETFL, "F_SETFL": F_SETFL, "FD_CLOEXEC": 1,
    "O_RDONLY": 0, "O_WRONLY": 1, "O_RDWR": O_RDWR, "O_NONBLOCK": O_NONBLOCK, "O_NDELAY": O_NONBLOCK,
    "SHUT_RD": 0, "SHUT_WR": 1, "SHUT_RDWR": 2,
    "POLLIN": 0x1, "POLLPRI": 0x2, "POLLOUT": 0x4, "POLLERR": 0x8, "POLLHUP": 0x10, "POLLNVAL": 0x20,
    "POLLRDNORM": 0x40, "POLLRDBAND": 0x80, "POLLWRNORM": 0x100, "POLLWRBAND": 0x200, "POLLRDHUP": 0x2000,
    "MSG_OOB": 0x1, "MSG_PEEK": 0x2, "MSG_DONTROUTE": 0x4, "MSG_TRUNC": 0x20, "MSG_DONTWAIT": 0x40,
    "MSG_EOR": 0x80, "MSG_WAITALL": 0x100, "MSG_NOSIGNAL": 0x4000, "MSG_MORE": 0x8000,
    "TCPI_OPT_TIMESTAMPS": 1, "TCPI_OPT_SACK": 2, "TCPI_OPT_WSCALE": 4, "TCPI_OPT_ECN": 8,
}

LINUX_STATE: Final = MappingProxyType({
    State.ESTABLISHED: 1, State.SYN_SENT: 2, State.SYN_RECEIVED: 3, State.FIN_WAIT_1: 4,
    State.FIN_WAIT_2: 5, State.TIME_WAIT: 6, State.CLOSED: 7, State.CLOSE_WAIT: 8, State.LAST_ACK: 9,
    State.LISTEN: 10, State.CLOSING: 11,
})
"""``tcpi_state`` as Linux numbers it (``include/net/tcp_states.h``)."""

_STATES: Final = {
    # Linux spellings
    "TCP_ESTABLISHED": 1, "TCP_SYN_SENT": 2, "TCP_SYN_RECV": 3, "TCP_FIN_WAIT1": 4, "TCP_FIN_WAIT2": 5,
    "TCP_TIME_WAIT": 6, "TCP_CLOSE": 7, "TCP_CLOSE_WAIT": 8, "TCP_LAST_ACK": 9, "TCP_LISTEN": 10,
    "TCP_CLOSING": 11,
    # the RFC's names, as FreeBSD's suite writes them
    "TCP_CLOSED": 7, "TCP_SYN_RECEIVED": 3, "TCP_FIN_WAIT_1": 4, "TCP_FIN_WAIT_2": 5,
}

STATE_NAMES: Final = MappingProxyType({v: k for k, v in reversed(list(_STATES.items()))})
"""A ``tcpi_state`` number -> its Linux name (for messages)."""

ERRNO: Final = MappingProxyType({name: code for code, name in _errno.errorcode.items()}
                                | {"EWOULDBLOCK": _errno.EAGAIN})
"""errno names -> numbers (``EINPROGRESS`` ...)."""

ERRNO_NAMES: Final = MappingProxyType(dict(_errno.errorcode) | {_errno.EAGAIN: "EAGAIN"})

CONSTANTS: Final = MappingProxyType(_SOCKET | _STATES)
"""Every symbol a system call or a code block may name."""

UNSUPPORTED_SOCKOPTS: Final = frozenset({"TCP_NOOPT", "TCP_NOPUSH", "TCP_KEEPINIT"})
"""Options of other stacks (FreeBSD): a script that sets them is UNSUPPORTED on every backend."""


def lookup(name: str) -> int | None:
    """The value of a symbol (a constant or an errno name), or None."""
    v = CONSTANTS.get(name)
    if v is None:
        v = ERRNO.get(name)
    return v


def errno_name(code: int) -> str:
    return ERRNO_NAMES.get(code, str(code))
