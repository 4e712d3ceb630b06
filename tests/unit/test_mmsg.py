"""Batched UDP I/O on real loopback sockets: many datagrams each way per call, exact bytes,
sources and destinations; refused destinations and a full buffer never raise."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from bridge.net.mmsg import BatchSocket, ipv4, set_buffers

LOCAL = "127.0.0.1"


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOCAL, 0))
    return sock


def test_a_batch_goes_out_to_many_peers_and_comes_back_in_one_call_each() -> None:
    batch = BatchSocket(udp(), batch=64, size=256)
    peers = [udp() for _ in range(5)]
    ports = np.array([p.getsockname()[1] for p in peers] * 8, np.uint16)
    count = ports.size
    lengths = np.arange(count) % 7 + 12
    for i in range(count):
        batch.tx.data[i, : lengths[i]] = (i + np.arange(lengths[i])) % 256
    assert batch.send(count, np.full(count, ipv4(LOCAL), np.uint32), ports, lengths) == count
    got: dict[int, list[bytes]] = {}
    for index, peer in enumerate(peers):
        peer.settimeout(1.0)
        got[index] = [peer.recv(512) for _ in range(8)]
    for i in range(count):
        expected = ((i + np.arange(lengths[i])) % 256).astype(np.uint8).tobytes()
        assert got[i % 5][i // 5] == expected
    # and back: every peer answers from its own port, read in one call
    for index, peer in enumerate(peers):
        for k in range(3):
            peer.sendto(bytes([index, k]) * 10, batch.sock.getsockname())
    received = 0
    for _ in range(100):
        received += (n := batch.receive())
        if n:
            hosts, sources = batch.sources(n)
            assert set(hosts.tolist()) == {ipv4(LOCAL)}
            lengths_in = batch.lengths(n)
            for row in range(n):
                data = batch.rx.data[row, : lengths_in[row]].tobytes()
                index = data[0]
                assert sources[row] == peers[index].getsockname()[1]
                assert data == bytes([index, data[1]]) * 10
        if received == 15:
            break
    assert received == 15
    assert batch.receive() == 0  # nothing waiting: no block, no error
    for peer in peers:
        peer.close()
    batch.close()


def test_refused_destinations_and_icmp_errors_do_not_stop_the_socket() -> None:
    sock = udp()
    set_buffers(sock)
    batch = BatchSocket(sock, batch=8, size=64)
    peer = udp()
    dead = udp()
    dead_port = dead.getsockname()[1]
    dead.close()  # sends to it draw ICMP port unreachable
    ports = np.array([dead_port, 0, peer.getsockname()[1]], np.uint16)  # port 0: refused
    hosts = np.full(3, ipv4(LOCAL), np.uint32)
    batch.tx.data[:3, :4] = np.frombuffer(b"abcd", np.uint8)
    batch.send(3, hosts, ports, np.full(3, 4))
    peer.settimeout(1.0)
    assert peer.recv(64) == b"abcd"
    assert batch.dropped >= 1
    peer.sendto(b"still here", sock.getsockname())
    for _ in range(100):
        if n := batch.receive():
            assert batch.rx.data[n - 1, : batch.lengths(n)[n - 1]].tobytes() == b"still here"
            break
    else:
        raise AssertionError("nothing received after the ICMP error")
    peer.close()
    batch.close()


def test_pktinfo_sends_from_and_tells_apart_many_local_addresses() -> None:
    """The load generator's socket: one wildcard socket held to loopback, each call its own
    127.64.x.y address both ways (with the time stamps in the same control area)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, 25, b"lo")  # SO_BINDTODEVICE
    sock.bind(("0.0.0.0", 0))
    batch = BatchSocket(sock, batch=16, size=64, timestamps=True)
    batch.with_pktinfo()
    peer = udp()
    peer.settimeout(1.0)
    sources = np.array([ipv4("127.64.0.5"), ipv4("127.64.0.9")], np.uint32)
    batch.tx.data[:2, :3] = [[1, 2, 3], [4, 5, 6]]
    port = np.full(2, peer.getsockname()[1], np.uint16)
    assert batch.send(2, np.full(2, ipv4(LOCAL), np.uint32), port, np.full(2, 3), sources) == 2
    heard = [peer.recvfrom(64) for _ in range(2)]
    assert [(data, address[0]) for data, address in heard] == [
        (b"\x01\x02\x03", "127.64.0.5"),
        (b"\x04\x05\x06", "127.64.0.9"),
    ]
    local_port = sock.getsockname()[1]
    peer.sendto(b"to nine", ("127.64.0.9", local_port))
    peer.sendto(b"to five", ("127.64.0.5", local_port))
    assert batch.receive() == 2  # loopback delivers within sendto
    assert bytes(batch.rx.data[0, :7]) == b"to nine"
    assert batch.destinations(2).tolist() == [ipv4("127.64.0.9"), ipv4("127.64.0.5")]
    assert not np.isnan(batch.arrivals(2)).any()  # the time stamps are still read
    batch.close()
    peer.close()


def test_sends_from_a_callers_buffer_then_from_its_own_rows() -> None:
    """`send_from` aims the iovecs at the caller's buffer and leaves them so (no reset per
    call); a later `send` of `tx.data` rows must still send those rows."""
    batch = BatchSocket(udp(), batch=8, size=64)
    peer = udp()
    peer.settimeout(1.0)
    host, port = np.full(3, ipv4(LOCAL), np.uint32), np.full(3, peer.getsockname()[1], np.uint16)
    blob = np.frombuffer(b"aaaabbbbbbcc", np.uint8)
    offsets, lengths = np.array([0, 4, 10]), np.array([4, 6, 2])
    for _ in range(2):
        assert batch.send_from(blob, offsets, lengths, host, port) == 3
        assert [peer.recv(64) for _ in range(3)] == [b"aaaa", b"bbbbbb", b"cc"]
    batch.tx.data[:3, :2] = [[1, 2], [3, 4], [5, 6]]
    assert batch.send(3, host, port, np.full(3, 2)) == 3
    assert [peer.recv(64) for _ in range(3)] == [b"\x01\x02", b"\x03\x04", b"\x05\x06"]
    batch.close()
    peer.close()


@pytest.mark.parametrize("timestamps", [True, False])
def test_stamps_compiled_are_numpys_lengths_and_arrivals(timestamps: bool) -> None:
    """`stamps` (the shared port's lengths and arrival times) reads the kernel's structs in C
    when built: the same figures, bit for bit, as numpy's `lengths` and `arrivals`; with no
    time stamp, the fallback (now) for every datagram."""
    batch = BatchSocket(udp(), batch=64, size=256, timestamps=timestamps)
    peer = udp()
    for k in range(20):
        peer.sendto(bytes(12 + k), batch.sock.getsockname())
    count = 0
    for _ in range(100):
        count = batch.receive()
        if count:
            break
    assert count > 0
    assert batch.compiled
    lengths, arrivals = batch.stamps(count, 123.25)
    batch.compiled = False
    plain_lengths, plain_arrivals = batch.stamps(count, 123.25)
    assert lengths.tolist() == plain_lengths.tolist() == list(range(12, 12 + count))
    if timestamps:
        assert arrivals.tolist() == plain_arrivals.tolist()
        assert (arrivals - 123.25 <= time.time()).all()
    else:  # now, each call's own
        assert len(set(arrivals.tolist())) == 1 and arrivals[0] <= plain_arrivals[0]
    peer.close()
    batch.close()
