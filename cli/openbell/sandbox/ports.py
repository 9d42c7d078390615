"""Free TCP ports on 127.0.0.1, chosen at `sandbox up`."""

from __future__ import annotations

import socket


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port and it can be bound.

    SO_REUSEADDR as every server sets it: connections of a killed process left in TIME_WAIT do not make
    its port "taken" for its restart."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick(count: int, avoid: set[int] | frozenset[int] = frozenset(), host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports the kernel reports free now (none of `avoid`)."""
    chosen: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(chosen) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            held.append(sock)  # keep it bound so the kernel does not hand the same port out twice
            port = int(sock.getsockname()[1])
            if port not in avoid and port not in chosen:
                chosen.append(port)
    finally:
        for sock in held:
            sock.close()
    return chosen
