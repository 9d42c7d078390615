"""The sandbox's port picking."""

from __future__ import annotations

from openbell.sandbox import ports


def test_picked_ports_are_distinct_free_and_avoid_the_taken_ones() -> None:
    first = ports.pick(5)
    second = ports.pick(5, avoid=set(first))
    assert len(set(first)) == 5 and not set(first) & set(second)
    assert all(ports.is_free(p) for p in second)


def test_a_bound_port_is_not_free() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not ports.is_free(sock.getsockname()[1])
