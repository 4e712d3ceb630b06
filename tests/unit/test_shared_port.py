"""A worker's shared RTP port on real loopback sockets: routing a batch to jitter buffers,
the slow path (telephone-event, truncated, strangers) and the batched send back."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest

from bridge.media.g711 import CODECS
from bridge.mixing import columnar
from bridge.mixing.participant import Participant
from bridge.mixing.room import Room
from bridge.mixing.vector.tick import VectorTick
from bridge.mixing.workers.shared_port import BATCH, SharedRtpPort
from bridge.rtp.jitter import JitterBuffer
from bridge.rtp.packet import parse_rtp
from bridge.rtp.stream_loss import StreamLoss


def rtp(sequence: int, payload_type: int = 0, payload: bytes = b"\xff" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, payload_type, sequence, 160 * sequence, 7) + payload


def phone() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    return sock


def member(name: str, remote: tuple[str, int]) -> Participant:
    return Participant(
        id=name, call_key=name, room="r", caller=name, display_name="", codec=CODECS["PCMU"],
        remote=remote, signalling_host="127.0.0.1", send=lambda data, address: None,
        jitter=JitterBuffer(2, 3), telephone_event_pt=101,
    )  # fmt: skip


@pytest.fixture
def port() -> Iterator[SharedRtpPort]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    shared = SharedRtpPort(sock)
    yield shared
    shared.close()


def heard(shared: SharedRtpPort) -> int:
    shared.fold()  # the array path counts packets in the columns
    counted = (p.counters.packets_in + p.counters.bad_packets for p in shared.members.values())
    return shared.unmatched + sum(counted)


def drain(shared: SharedRtpPort, expected: int) -> None:
    """Read until `expected` datagrams were counted (loopback delivery is not instant)."""
    for _ in range(200):
        shared.receive(100.0)
        if heard(shared) >= expected:
            return
        time.sleep(0.01)
    raise AssertionError(f"counted {heard(shared)} of {expected}")


def test_a_batch_reaches_each_callers_jitter_buffer(port: SharedRtpPort) -> None:
    phones = [phone() for _ in range(3)]
    members = [member(f"m{i}", p.getsockname()) for i, p in enumerate(phones)]
    for m in members:
        port.add(m, 0.0)
    for sequence in range(5):
        for i, p in enumerate(phones):
            p.sendto(rtp(100 * i + sequence, payload=bytes([i]) * 160), ("127.0.0.1", port.port))
    drain(port, 15)
    for i, m in enumerate(members):
        assert m.counters.packets_in == 5
        assert m.latched == phones[i].getsockname()
        assert m.jitter.stats.received == 5
        assert m.last_rtp != 0.0
        frames = [m.jitter.pop() for _ in range(5)]
        assert bytes([i]) * 160 in frames  # its own payload, not another caller's
    for p in phones:
        p.close()


def test_the_slow_path_and_strangers(port: SharedRtpPort) -> None:
    caller, stranger = phone(), phone()
    m = member("m", caller.getsockname())
    port.add(m, 0.0)
    caller.sendto(rtp(1), ("127.0.0.1", port.port))
    drain(port, 1)
    # telephone-event "5" (a key press' first packet), then a truncated datagram, a stranger
    caller.sendto(rtp(2, 101, bytes([5, 10, 0, 160])), ("127.0.0.1", port.port))
    caller.sendto(b"\x80\x00\x01", ("127.0.0.1", port.port))
    stranger.sendto(rtp(3), ("127.0.0.1", port.port))
    drain(port, 4)
    assert m.digits == [("5", "rfc4733")]
    assert m.counters.bad_packets == 1
    assert m.counters.packets_in == 2
    assert port.unmatched == 1
    port.remove("m")  # it leaves with its own jitter buffer and counts, as they stood
    assert isinstance(m.jitter, JitterBuffer) and isinstance(m.loss, StreamLoss)
    assert (m.jitter.stats.received, m.loss.received, m.counters.packets_in) == (1, 2, 2)
    assert m.jitter.queued == 1 and m.last_rtp != 0.0
    caller.sendto(rtp(4), ("127.0.0.1", port.port))
    drain(port, 2)  # (m's own counters no longer count here)
    assert port.unmatched == 2  # a removed call's packets are nobody's
    caller.close()
    stranger.close()


def test_a_key_on_the_shared_port_reaches_the_vector_ticks_digits(port: SharedRtpPort) -> None:
    """The tick looks for digits only in members the port marked (`JitterColumns.keyed`):
    a telephone-event taken on the slow path must still come out of the tick, once."""
    phones = [phone() for _ in range(3)]
    members = [member(f"m{i}", p.getsockname()) for i, p in enumerate(phones)]
    room = Room("r", 3)
    for m in members:
        port.add(m, 0.0)
        room.add(m)
    vector = VectorTick()
    for p in phones:
        p.sendto(rtp(1), ("127.0.0.1", port.port))
    drain(port, 3)
    assert vector.tick([room]) == [[]]
    phones[2].sendto(rtp(2, 101, bytes([9, 10, 0, 160])), ("127.0.0.1", port.port))
    drain(port, 4)
    assert port.columns.keyed == {columnar.column_of(members[2]).slot}  # type: ignore[union-attr]
    assert vector.tick([room]) == [[(members[2], "9", "rfc4733")]]
    assert not port.columns.keyed and members[2].digits == []
    assert vector.tick([room]) == [[]]
    for p in phones:
        p.close()


def test_a_call_handed_over_while_its_first_packet_waits_gets_it(port: SharedRtpPort) -> None:
    """The race a worker had: commands read, then the hand-over written, the 200 OK sent and
    the call's first RTP arriving, then the read. Commands now run between the read and the
    routing (`before_routing`): the packet is the new call's, not a stranger's."""
    caller = phone()
    m = member("late", caller.getsockname())
    caller.sendto(rtp(1), ("127.0.0.1", port.port))
    time.sleep(0.05)  # (loopback: there by now)
    port.receive(
        100.0, before_routing=lambda: None if m.call_key in port.members else port.add(m, 100.0)
    )
    assert port.unmatched == 0
    port.fold()
    assert m.counters.packets_in == 1
    caller.close()


def test_sends_leave_in_batches_from_the_shared_port(port: SharedRtpPort) -> None:
    phones = [phone() for _ in range(3)]
    members = [member(f"m{i}", p.getsockname()) for i, p in enumerate(phones)]
    for m in members:
        port.add(m, 0.0)
    count = BATCH // 3 + 10  # two sendmmsg calls, each phone's receive buffer not full
    for n in range(count):
        for i, m in enumerate(members):
            m.send_payload(bytes([i, n % 256]))
    port.flush()
    assert port.io.sent == 3 * count
    for i, p in enumerate(phones):
        for n in range(count):
            data, source = p.recvfrom(2048)
            assert source == ("127.0.0.1", port.port)  # symmetric RTP
            packet = parse_rtp(data)
            assert packet.payload == bytes([i, n % 256])
            assert packet.ssrc == members[i].sender.ssrc
        p.close()
    port.flush()  # nothing queued: nothing sent
    assert port.io.sent == 3 * count


def test_an_srtp_leg_on_the_shared_port_is_unprotected_and_protected(port: SharedRtpPort) -> None:
    """Its header is in clear, so the array fast path would queue ciphertext: it must take
    `receive_rtp`, which authenticates and decrypts, and its packets leave protected."""
    import os

    import pylibsrtp

    from bridge.media.srtp import SrtpKeys, SrtpSession

    keys = SrtpKeys("AES_CM_128_HMAC_SHA1_80", os.urandom(30), os.urandom(30))
    profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    outbound = pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    inbound = pylibsrtp.Policy.SSRC_ANY_INBOUND
    phone_tx = pylibsrtp.Session(pylibsrtp.Policy(keys.remote, outbound, srtp_profile=profile))
    phone_rx = pylibsrtp.Session(pylibsrtp.Policy(keys.local, inbound, srtp_profile=profile))
    caller = phone()
    m = member("srtp", caller.getsockname())
    m.srtp = SrtpSession(keys)
    port.add(m, 0.0)
    for sequence in (1, 2, 3):  # (the jitter buffer's probation wants two in a row)
        packet = phone_tx.protect(rtp(sequence, payload=b"\x11" * 160))
        caller.sendto(packet, ("127.0.0.1", port.port))
    caller.sendto(rtp(4, payload=b"\x22" * 160), ("127.0.0.1", port.port))  # not protected
    drain(port, 3)
    for _ in range(20):
        port.receive(100.0)
    assert m.counters.packets_in == 3 and m.counters.srtp_rejected == 1
    assert b"\x11" * 160 in [m.jitter.pop() for _ in range(3)]  # the plaintext, once buffered
    m.send_payload(b"\x33" * 160)
    port.flush()
    data, _ = caller.recvfrom(2048)
    assert data[12:] != b"\x33" * 160  # ciphertext on the wire
    assert parse_rtp(phone_rx.unprotect(data)).payload == b"\x33" * 160
    caller.close()


def test_row_sends_and_one_by_one_sends_leave_together_in_order(port: SharedRtpPort) -> None:
    """A tick's array sends (`send_rows` on the members' stream columns) and packets queued
    one by one before and after them leave in one flush, each member's in the order queued,
    with one sequence space per member; past BATCH datagrams in several system calls."""
    import numpy as np

    phones = [phone() for _ in range(3)]
    members = [member(f"m{i}", p.getsockname()) for i, p in enumerate(phones)]
    for m in members:
        port.add(m, 0.0)
    slots = np.array([m.sender.slot for m in members])  # type: ignore[attr-defined]
    payloads = np.arange(3 * 160, dtype=np.uint8).reshape(3, 160) % 251
    rounds = BATCH // 6 + 5  # two datagrams per member per round: over BATCH in all
    for n in range(rounds):
        members[n % 3].send_payload(b"one by one")
        port.senders.send_rows(slots, 0, payloads, np.array([2, 1, 0]), 160)
    port.flush()
    assert port.io.sent == rounds + 3 * rounds
    for i, p in enumerate(phones):
        expected = []
        for n in range(rounds):
            if n % 3 == i:
                expected.append(b"one by one")
            expected.append(payloads[2 - i].tobytes())
        got = [parse_rtp(p.recvfrom(2048)[0]) for _ in expected]
        assert [packet.payload for packet in got] == expected
        first = got[0].sequence
        assert [packet.sequence for packet in got] == [
            (first + k) & 0xFFFF for k in range(len(got))
        ]
    port.senders.settle()
    one_by_one = [(rounds + 2 - i) // 3 for i in range(3)]
    assert [m.counters.packets_out for m in members] == [rounds + k for k in one_by_one]
    for p in phones:
        p.close()


@pytest.mark.parametrize("ticks_due", [1, 3])
def test_a_late_worker_keeps_the_frames_its_catch_up_ticks_play(
    port: SharedRtpPort, ticks_due: int
) -> None:
    """A worker that wakes two ticks late finds three ticks' packets on top of its margin and
    runs three ticks before it reads again: those frames must wait for them, not be trimmed to
    the usual bound on the way in (the ticks after would then find nothing and conceal)."""
    sender = phone()
    caller = member("m", sender.getsockname())
    port.add(caller, 0.0)
    for sequence in range(2):  # playing, one frame of margin
        sender.sendto(rtp(sequence), ("127.0.0.1", port.port))
    drain(port, 2)
    for sequence in range(2, 5):  # the worker was asleep for these
        sender.sendto(rtp(sequence), ("127.0.0.1", port.port))
    time.sleep(0.05)
    port.receive(100.0, ticks_due=ticks_due)
    jitter = caller.jitter
    assert jitter.stats.received == 5 and jitter.max_frames == 3  # the bound is back
    played = [jitter.pop() for _ in range(3)]
    if ticks_due == 3:
        assert jitter.trimmed == 0 and None not in played and jitter.queued == 2
    else:  # read as for one tick: two trimmed on the way in
        assert jitter.trimmed == 2
