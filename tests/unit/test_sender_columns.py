"""Outgoing streams as columns (`SenderColumns`) against one `RtpSender` per member.

The big test runs random rooms twice through the vectorised tick, with the shared port's
send side and no socket: once the way the port sent before the columns (`send_payload` per
member, a plain `RtpSender` each, every datagram queued one by one), once with the members'
streams in columns (the common case sent as rows). Every datagram each destination receives,
and their order, must be the same byte for byte, through mute, deafness, hold both ways,
volume, prompts, telephone-event trains, SRTP legs, latching, members leaving the port and
coming back, joins, leaves and moves, several rooms, PCMU and PCMA.
"""

from __future__ import annotations

import pickle
from collections import defaultdict

import numpy as np
import pytest

from bridge.media.srtp import SrtpKeys, SrtpSession
from bridge.mixing.participant import MediaCounters, Participant
from bridge.rtp.packet import RtpSender
from bridge.rtp.sender_columns import ColumnSender, SenderColumns
from bridge.rtp.source_demux import address_key
from bridge.rtp.telephone_event import digit_packets
from tests.unit.test_room_shared_mix import ADDRESS, Caller, Wire, make_member
from tests.unit.test_vector_tick import KINDS_P, World, change


def test_a_column_sender_sends_what_an_rtp_sender_sends() -> None:
    rng = np.random.default_rng(5)
    plain = RtpSender(payload_type=8, ssrc=0xDEADBEEF, sequence=65530, timestamp=0xFFFF_FF00)
    columns = SenderColumns(capacity=1)
    others = [columns.attach(RtpSender()) for _ in range(3)]  # grows the columns twice
    column = columns.attach(RtpSender(8, 0xDEADBEEF, 65530, 0xFFFF_FF00))
    for _ in range(200):
        step = int(rng.integers(4))
        payload = rng.integers(0, 256, int(rng.integers(0, 200)), np.uint8).tobytes()
        if step == 0:
            assert column.packet(payload) == plain.packet(payload)
        elif step == 1:
            marker = bool(rng.integers(2))
            assert column.packet(payload, 0, marker, 101) == plain.packet(payload, 0, marker, 101)
        elif step == 2:
            column.skip(320)
            plain.skip(320)
        else:
            column.drop(160)
            plain.drop(160)
    assert column.plain() == plain
    assert pickle.loads(pickle.dumps(column)) == plain  # a hand-over carries a plain sender
    assert all(other.sequence != plain.sequence or other.ssrc != plain.ssrc for other in others)


def test_a_sender_leaving_the_columns_goes_on_where_it_was_and_frees_its_slot() -> None:
    columns = SenderColumns(capacity=2)
    counters = MediaCounters()
    sender = columns.attach(RtpSender(ssrc=9, sequence=65535, timestamp=7), counters)
    columns.set_destination(sender, ("127.0.0.1", 4000))
    payloads = np.arange(320, dtype=np.uint8).reshape(2, 160)
    columns.send_rows(np.array([sender.slot]), 0, payloads, np.array([1]), 160)
    (segment,) = columns.take()
    assert bytes(segment.blob) == RtpSender(0, 9, 65535, 7).packet(payloads[1].tobytes())
    assert segment.destinations.tolist() == [address_key("127.0.0.1", 4000)]
    assert counters.packets_out == 0  # until settled
    columns.settle()
    assert counters.packets_out == 1
    slot = sender.slot
    plain = columns.detach(sender)
    assert (plain.sequence, plain.timestamp, plain.packets_sent, plain.octets_sent) == (
        0,
        167,
        1,
        160,
    )
    again = columns.attach(RtpSender())
    assert again.slot == slot  # reused: the stale sender no longer writes into it
    sender.packet(b"x")
    assert again.packets_sent == 0


def test_rows_to_streams_with_no_destination_advance_but_are_not_sent() -> None:
    columns = SenderColumns()
    senders = [columns.attach(RtpSender(sequence=10)) for _ in range(3)]
    columns.set_destination(senders[0], ("127.0.0.1", 4000))
    columns.set_destination(senders[2], ("no-such-host.invalid", 4000))  # not IPv4: nowhere
    slots = np.array([s.slot for s in senders])
    columns.send_rows(slots, 0, np.zeros((1, 160), np.uint8), np.zeros(3, np.int64), 160)
    (segment,) = columns.take()
    assert len(segment.offsets) == 1
    assert [s.sequence for s in senders] == [11, 11, 11]
    assert columns.take() == []


class PortWorld(World):
    """Rooms ticked by `VectorTick`, their members sending on a shared port's send side;
    `columnar` puts the members' streams in its columns."""

    def __init__(self, columnar: bool) -> None:
        super().__init__(vectorised=True)
        self.columnar = columnar
        self.port = SenderColumns()
        self.received: dict[int, list[bytes]] = defaultdict(list)  # by destination

    def enter(self, room: str, member: Participant) -> None:
        member.send = self.port.queue
        self.attach(member)
        self.join(room, member, Wire())

    def attach(self, member: Participant) -> None:
        if self.columnar:
            member.sender = self.port.attach(member.sender, member.counters)
            self.aim(member)

    def aim(self, member: Participant) -> None:
        if isinstance(member.sender, ColumnSender):
            self.port.set_destination(member.sender, member.latched or member.remote)

    def tick(self) -> None:
        super().tick()
        self.collect()

    def collect(self) -> None:
        for segment in self.port.take():
            for offset, length, to in zip(
                segment.offsets.tolist(),
                segment.lengths.tolist(),
                segment.destinations.tolist(),
                strict=True,
            ):
                self.received[to].append(segment.blob[offset : offset + length].tobytes())


def other_change(rng: np.random.Generator, worlds: list[PortWorld], member_id: str) -> None:
    """What `change` does not do: a telephone-event train, latching elsewhere, a re-INVITE to
    port 0 and back, leaving the port (a hand-over) and coming back, made in both worlds."""
    kind = int(rng.integers(4))
    digit = str(rng.choice(list("0123456789*#")))
    for world in worlds:
        _, member = world.find(member_id)
        if kind == 0:
            for packet in digit_packets(member.sender, digit, 120):
                member.send(packet, member.destination)
        elif kind == 1:
            member.latched = (ADDRESS, 20000 + member.remote[1])
            world.aim(member)
        elif kind == 2:
            port = member.remote[1]
            member.remote = (ADDRESS, 0 if port else 4000 + 2 * int(member.id[1:]))
            world.aim(member)
        elif isinstance(member.sender, ColumnSender):
            member.sender = world.port.detach(member.sender)
            world.attach(member)
        assert world.vector is not None
        world.vector.changed(member)


@pytest.mark.parametrize("seed", range(30))
def test_columnar_sends_are_what_one_by_one_sends_were(seed: int) -> None:
    rng = np.random.default_rng(2000 + seed)
    worlds = [PortWorld(columnar=False), PortWorld(columnar=True)]
    callers: dict[str, Caller] = {}
    mixed_codecs = seed % 3 != 1
    next_index = 0

    def join(room: str) -> None:
        nonlocal next_index
        index = next_index
        next_index += 1
        codec = str(rng.choice(["PCMU", "PCMA"])) if mixed_codecs else "PCMU"
        te_pt = None if rng.random() < 0.6 else 101
        kind = str(rng.choice(Caller.KINDS, p=KINDS_P))
        keys = None
        if rng.random() < 0.1:
            material = rng.integers(0, 256, 60, np.uint8).tobytes()
            keys = SrtpKeys("AES_CM_128_HMAC_SHA1_80", material[:30], material[30:])
        for world in worlds:
            member = make_member(index, codec, te_pt, Wire())
            if keys is not None:
                member.srtp = SrtpSession(keys)
            world.enter(room, member)
        callers[f"p{index}"] = Caller(index, codec, kind, rng)

    room_count = int(rng.integers(1, 9))
    for r in range(room_count):
        for _ in range(int(rng.integers(1, 14)) if r or seed % 5 else 45):
            join(f"room{r}")
    for tick in range(90):
        for member_id, caller in callers.items():
            data = caller.packet()
            if data is None:
                continue
            for world in worlds:
                _, member = world.find(member_id)
                member.receive_rtp(data, member.remote, tick * 0.02)
        if tick > 4 and rng.random() < 0.4:
            change(rng, worlds, str(rng.choice(sorted(callers))))  # type: ignore[arg-type]
        if tick > 4 and rng.random() < 0.3:
            other_change(rng, worlds, str(rng.choice(sorted(callers))))
        if tick > 4 and rng.random() < 0.15:  # someone joins, in a room or a new one
            join(f"room{int(rng.integers(room_count + 1))}")
        if tick > 4 and rng.random() < 0.1 and len(callers) > 1:  # someone leaves
            gone = str(rng.choice(sorted(callers)))
            del callers[gone]
            for world in worlds:
                world.leave(gone)
        if tick > 4 and rng.random() < 0.1:  # someone moves to another room
            moving = str(rng.choice(sorted(callers)))
            target = f"room{int(rng.integers(room_count + 1))}"
            for world in worlds:
                world.join(target, world.leave(moving), world.wires[moving])
        for world in worlds:
            world.tick()
    one_by_one, columnar = worlds
    assert columnar.digits == one_by_one.digits
    assert columnar.talking == one_by_one.talking
    assert columnar.received.keys() == one_by_one.received.keys()
    for to, datagrams in one_by_one.received.items():
        assert columnar.received[to] == datagrams, to
    assert sum(map(len, one_by_one.received.values())) > 0
    columnar.port.settle()
    for member_id in callers:
        assert columnar.find(member_id)[1].counters == one_by_one.find(member_id)[1].counters


def test_the_common_case_goes_as_rows() -> None:
    """The test above is not one-by-one on both sides: plain members take the rows, one
    with a prompt does not until it ends."""
    world = PortWorld(columnar=True)
    members = [make_member(i, "PCMU", None, Wire()) for i in range(4)]
    for member in members:
        world.enter("r", member)
    members[3].prompts.play(np.full(480, 3000, np.int16))  # three frames
    world.tick()
    assert world.vector is not None
    sends = world.vector.layouts.current
    assert sends is not None
    (row_sends,) = sends.row_sends
    assert row_sends[3].tolist() == [0, 1, 2] and sends.slow == [[3]]
    for _ in range(3):
        world.tick()
    sends = world.vector.layouts.current
    assert sends is not None and sends.slow == [[]]
    assert all(len(world.received[address_key(*m.remote)]) == 4 for m in members)
