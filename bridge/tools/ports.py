"""Free loopback ports for the tests and benchmarks, which never assume a port is free."""

from __future__ import annotations

import random
import socket
from collections.abc import Sequence

LOOPBACK = "127.0.0.1"


def free_port(kinds: Sequence[int] = (socket.SOCK_DGRAM, socket.SOCK_STREAM)) -> int:
    """A loopback port free for every socket kind given (UDP and TCP by default)."""
    for _ in range(200):
        port = random.randrange(20000, 60000)
        sockets = []
        try:
            for kind in kinds:
                sock = socket.socket(socket.AF_INET, kind)
                sockets.append(sock)
                sock.bind((LOOPBACK, port))
            return port
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free port found")
