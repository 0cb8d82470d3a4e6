"""synack: a readable RFC 9293 TCP in Python.

A sans-IO TCP core (``connection``, ``host``), a deterministic simulated network (``sim``), a Linux
TUN driver (``tun``), and tools that explain every segment (``wire``, ``pcap``, ``decode``, ``trace``).
"""

__version__ = "0.1.0"
