"""The room's shared mix: every member hears exactly what the one-row-per-member tick gave.

`ReferenceRoom.tick` is the tick as it was before non-contributors shared one encoded total
(each member decoded on its own, mix-minus under a mask for every row, every row encoded).
Random rooms with every flag, losses, odd payloads, key tones, prompts and volumes are driven
through both with the same packets, and every packet sent must be the same bytes.
"""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from bridge.media.g711 import CODECS, PCMA, PCMU
from bridge.media.prompt import overlay
from bridge.media.tones import ToneSource, dtmf_tones
from bridge.mixing.participant import Participant
from bridge.mixing.room import FRAME_SAMPLES, VOICE_POWER, Digit, Room, _scaled
from bridge.rtp.jitter import JitterBuffer
from bridge.rtp.packet import RtpSender

ADDRESS = "127.0.0.1"
ADDRESS_0 = (ADDRESS, 4000)


class ReferenceRoom(Room):
    """The tick before the shared mix, kept verbatim apart from an inline mix-minus."""

    def tick(self) -> list[Digit]:
        members = self.participants
        n = len(members)
        if n == 0:
            return []
        frames = self.mixer.slots(n)
        digits: list[Digit] = []
        for i, participant in enumerate(members):
            _reference_next_frame(participant, frames[i])
            if participant.digits:
                digits.extend((participant, d, m) for d, m in participant.digits)
                participant.digits.clear()
        states = [p.inband for p in members]
        for participant, digit in zip(members, self.detector.process(frames, states), strict=True):
            if digit is not None and participant.inband_dtmf:
                digits.append((participant, digit, "inband"))
        loud = (self.detector.energies > VOICE_POWER * FRAME_SAMPLES).tolist()
        for participant, is_loud in zip(members, loud, strict=True):
            if participant.voice.update(is_loud and not participant.held):
                self.talk_changes.append(participant)
        if self.mixing:
            contributes = np.array(
                [
                    not (
                        p.muted
                        or p.on_hold
                        or p.held
                        or (p.inband_dtmf and p.inband is not None and p.inband.tone_present)
                    )
                    for p in members
                ]
            )
            wide = frames.astype(np.int64) * contributes[:, np.newaxis]
            mixed = np.clip(wide.sum(axis=0) - wide, -32768, 32767).astype(np.int16)
        else:
            mixed = np.zeros((n, FRAME_SAMPLES), np.int16)
        as_index = mixed.view(np.uint16)
        codecs = {p.codec.name: p.codec for p in members}
        encoded = {name: codec.encode_table.take(as_index) for name, codec in codecs.items()}
        music: dict[str, bytes] = {}
        for i, participant in enumerate(members):
            if participant.on_hold:
                continue
            if participant.held:
                if not music:
                    music = self._hold_music_frames(codecs)
                participant.send_payload(music[participant.codec.name])
                continue
            prompt = participant.prompts.next_frame() if participant.prompts.busy else None
            if prompt is None and participant.volume_db == 0:
                if participant.deaf:
                    participant.send_payload(participant.codec.silence)
                else:
                    participant.send_payload(encoded[participant.codec.name][i].tobytes())
                continue
            heard = np.zeros(FRAME_SAMPLES, np.int16) if participant.deaf else mixed[i]
            if participant.volume_db:
                heard = _scaled(heard, participant.volume_db)
            if prompt is not None:
                frame, replace = prompt
                heard = overlay(heard, frame, replace=replace)
            participant.send_payload(participant.codec.encode(heard))
        return digits


def _reference_next_frame(participant: Participant, out: np.ndarray) -> None:
    """`Participant.next_frame` as it was: decode at once, the concealer keeps the samples."""
    payload = participant.jitter.pop()
    if payload is None:
        out[:] = participant.concealer.conceal()
        return
    participant.codec.decode_into(payload, out)
    participant.concealer.good(out)


class Wire:
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def send(self, data: bytes, address: tuple[str, int]) -> None:
        self.packets.append(data)


def make_member(index: int, codec: str, te_pt: int | None, wire: Wire) -> Participant:
    return Participant(
        id=f"p{index}",
        call_key=f"c{index}",
        room="r",
        caller=f"caller{index}",
        display_name="",
        codec=CODECS[codec],
        remote=(ADDRESS, 4000 + 2 * index),
        signalling_host=ADDRESS,
        send=wire.send,
        jitter=JitterBuffer(2, 3),
        telephone_event_pt=te_pt,
        sender=RtpSender(ssrc=index + 1, sequence=100 * index, timestamp=1000 * index),
    )


class Caller:
    """What one phone sends: talk, noise, exact silence, one-LSB frames, key tones, gaps."""

    KINDS = ("talk", "loud", "noise", "zeros", "lsb", "dtmf", "gaps", "short")

    def __init__(self, index: int, codec: str, kind: str, rng: np.random.Generator) -> None:
        self.codec = CODECS[codec]
        self.kind = kind
        self.rng = rng
        self.sender = RtpSender(payload_type=self.codec.payload_type, ssrc=0x1000 + index)
        self.tone = ToneSource(250.0 + 113.0 * index, 30000 if kind == "loud" else 5000)
        self.keys = dtmf_tones("15#", on_ms=80, off_ms=60) if kind == "dtmf" else None
        self.position = 0

    def frame(self) -> np.ndarray:
        kind, rng = self.kind, self.rng
        if kind in ("talk", "loud", "short"):
            return self.tone.next_frame(160)
        if kind == "noise":
            return rng.integers(-50, 51, 160).astype(np.int16)
        if kind == "lsb":  # silence but for one small sample now and then
            frame = np.zeros(160, np.int16)
            if rng.random() < 0.5:
                frame[rng.integers(160)] = rng.choice([-1, 1, 9, -9])
            return frame
        if kind == "dtmf":
            assert self.keys is not None
            start = self.position % (self.keys.size - 160)
            self.position += 160
            return self.keys[start : start + 160]
        return np.zeros(160, np.int16)  # zeros, gaps

    def packet(self) -> bytes | None:
        payload = self.codec.encode(self.frame())
        if self.kind == "short" and self.rng.random() < 0.3:
            payload = payload[: self.rng.choice([80, 100])]
        if (self.kind == "gaps" and self.rng.random() < 0.4) or self.rng.random() < 0.03:
            self.sender.packet(payload)  # sent, but lost on the way
            return None
        return self.sender.packet(payload)


def mutate(rng: np.random.Generator, rooms: list[Room], index: int) -> None:
    """One random change, made to the same member of every room."""
    change = rng.integers(7)
    volume = int(rng.choice([-6, 0, 0, 3]))
    prompt = rng.integers(-20000, 20000, int(rng.integers(100, 900))).astype(np.int16)
    replace = bool(rng.random() < 0.5)
    for room in rooms:
        member = room.participants[index]
        if change == 0:
            member.muted = not member.muted
        elif change == 1:
            member.deaf = not member.deaf
        elif change == 2:
            member.on_hold = not member.on_hold
        elif change == 3:
            member.held = not member.held
        elif change == 4:
            member.volume_db = volume
        elif change == 5:
            member.prompts.play(prompt, replace_room_audio=replace)
        else:
            room.mixing = not room.mixing


@pytest.mark.parametrize("seed", range(24))
def test_every_member_hears_what_the_reference_tick_gave(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 24)) if seed % 4 else int(rng.integers(40, 70))
    mixed_codecs = seed % 3 == 0
    kinds = rng.choice(Caller.KINDS, size, p=[0.1, 0.1, 0.1, 0.3, 0.1, 0.1, 0.1, 0.1])
    codecs = [str(rng.choice(["PCMU", "PCMA"])) if mixed_codecs else "PCMU" for _ in range(size)]
    if seed % 6 == 5:
        codecs = ["PCMA"] * size
    rooms: list[Room] = [Room("r", 100), ReferenceRoom("r", 100)]
    wires: list[list[Wire]] = [[], []]
    for i in range(size):
        te_pt = None if rng.random() < 0.7 else 101
        for room, room_wires in zip(rooms, wires, strict=True):
            wire = Wire()
            room.add(make_member(i, codecs[i], te_pt, wire))
            room_wires.append(wire)
    callers = [Caller(i, codecs[i], str(kinds[i]), rng) for i in range(size)]
    digits: list[list[tuple[str, str, str]]] = [[], []]
    for tick in range(80):
        for i, caller in enumerate(callers):
            data = caller.packet()
            if data is not None:
                for room in rooms:
                    member = room.participants[i]
                    member.receive_rtp(data, member.remote, tick * 0.02)
        if tick > 4 and rng.random() < 0.3:
            mutate(rng, rooms, int(rng.integers(size)))
        for room, found in zip(rooms, digits, strict=True):
            found.extend((p.id, d, m) for p, d, m in room.tick())
        assert [p.id for p in rooms[0].talk_changes] == [p.id for p in rooms[1].talk_changes]
    assert digits[0] == digits[1]
    for new, reference in zip(*wires, strict=True):
        assert new.packets == reference.packets


def test_listeners_who_do_not_contribute_get_one_shared_payload() -> None:
    room = Room("r", 100)
    sent: dict[str, list[bytes]] = {}
    members = []
    for i in range(8):
        member = make_member(i, "PCMU" if i < 6 else "PCMA", None, Wire())
        payloads = sent[member.id] = []
        member.send_payload = payloads.append  # type: ignore[method-assign]
        room.add(member)
        members.append(member)
    members[3].muted = True  # talks, but is not heard: hears the total like the silent ones
    for member in members[6:]:  # A-law has no code for 0: its silence is +-8, so it contributes
        member.muted = True
    talkers = {0: ToneSource(440.0, 5000), 1: ToneSource(1000.0, 5000), 3: ToneSource(700, 5000)}
    senders = [RtpSender(payload_type=m.codec.payload_type) for m in members]
    for tick in range(5):
        for i, member in enumerate(members):
            frame = talkers[i].next_frame() if i in talkers else np.zeros(160, np.int16)
            data = senders[i].packet(member.codec.encode(frame))
            member.receive_rtp(data, member.remote, tick * 0.02)
        room.tick()
    last = {name: payloads[-1] for name, payloads in sent.items()}
    shared_pcmu = [last[f"p{i}"] for i in (2, 3, 4, 5)]
    assert all(payload is shared_pcmu[0] for payload in shared_pcmu)
    assert last["p6"] is last["p7"] and last["p6"] != shared_pcmu[0]
    assert last["p0"] != shared_pcmu[0] and last["p1"] != shared_pcmu[0]
    assert len({id(last[f"p{i}"]) for i in range(8)}) == 4  # two talkers, one total per codec
    heard = PCMU.decode(shared_pcmu[0]).astype(np.int32)
    talking = PCMU.decode(last["p0"]).astype(np.int32)
    assert np.abs(heard).max() > 4000 and not np.array_equal(heard, talking)
    assert PCMA.decode(last["p6"]).any()


def _no_send(data: bytes, address: tuple[str, int]) -> None:
    """A module function: pickles by name, as a participant in transit's send does."""


def test_participant_pickles_with_a_frame_kept_for_concealment() -> None:
    room = Room("r", 10)
    members = [make_member(i, "PCMA", None, Wire()) for i in range(2)]
    for member in members:
        room.add(member)
    tone = ToneSource(440.0, 8000)
    sender = RtpSender(payload_type=PCMA.payload_type)
    for tick in range(4):
        members[0].receive_rtp(sender.packet(PCMA.encode(tone.next_frame())), ADDRESS_0, tick)
        room.tick()
    room.tick()  # plays the last packet; the concealer keeps it undecoded
    travelling = dataclasses.replace(members[0], send=_no_send, inband=None)
    copy = pickle.loads(pickle.dumps(travelling))
    out = np.zeros(160, np.int16)
    copy.next_frame(out)  # nothing queued: the kept payload is decoded and faded
    members[0].next_frame(frame := np.zeros(160, np.int16))
    assert out.any() and np.array_equal(out, frame)
