"""Which call a datagram on a shared RTP port belongs to, from its source address (sans-I/O).

A media worker's shared port receives every shared-port call's RTP on one socket, so the
source address is all that tells the calls apart. The rule, in this order:

1. **The exact address**: a source equal to a call's latched address (where its RTP really
   comes from), or, for a call not latched yet, to the address its SDP named, is that call's.
   The call latches to it.
2. **Latching an unknown source**: a source matching no call is given to the *only* call not
   yet latched that came from the source's IP (its SIP did, or its SDP's address has that IP)
   and has been on the port for LATCH_GRACE_S without a packet from its exact address: a
   phone behind a NAT whose SDP names its private address, or a relay on the phone's host.
   That call latches to it from then on. The grace keeps another phone on the same host,
   whose first packets arrive before its own call is set up here, from being taken for a call
   that simply has not been heard yet (that call's own packets latch it exactly meanwhile).
   With two or more unlatched calls from that IP (however young) nothing is guessed: a wrong
   guess would send one caller's audio to another.
3. **Else the datagram is dropped and counted** (`unmatched`): a stranger, a second unknown
   port from an IP with no unlatched call, or one unknown source from an IP with two or more
   unlatched calls (two callers behind one NAT address are told apart only once each has
   latched by its exact SDP address).

Symmetric RTP: a call is sent to its latched address (or its SDP address until it latches),
from the shared port its SDP answer named. The lookup is vectorised: the known addresses are
a sorted array of `ip << 16 | port` keys, so a batch of sources is routed with one
`searchsorted`; only sources never seen before take the Python path of rule 2.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import numpy as np

from bridge.rtp import native

Address = tuple[str, int]
UNMATCHED = -1
LATCH_GRACE_S = 0.2  # rule 2 waits this long for a call's packets from its exact address


def address_key(host: str, port: int) -> int:
    """An IPv4 address and port as one integer: `ip << 16 | port`."""
    try:
        ip = int.from_bytes(socket.inet_aton(host), "big")
    except OSError:
        return -1  # not IPv4 (a hostname or IPv6 in SDP): matches no source
    return ip << 16 | port


@dataclass
class _Entry:
    sdp: int  # key of the SDP address (-1: none)
    hosts: frozenset[int]  # IPs rule 2 accepts: the SDP address' and the signalling host's
    added_at: float
    latched: int = -1


@dataclass
class SourceDemux:
    """Routes sources to call slots (any hashable id the caller chooses, here a leg key)."""

    entries: dict[str, _Entry] = field(default_factory=dict)
    unmatched: int = 0  # datagrams dropped by rule 3
    _keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _slots: list[str] = field(default_factory=list)
    _unlatched: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # per key
    _dirty: bool = True
    newly_latched: list[str] = field(default_factory=list)  # since the caller last took them

    def add(self, slot: str, sdp: Address, signalling_host: str, now: float) -> None:
        key = address_key(*sdp) if sdp[1] else -1
        hosts = {k >> 16 for k in (key, address_key(signalling_host, 0)) if k >= 0}
        self.entries[slot] = _Entry(key, frozenset(hosts), now)
        self._dirty = True

    def update(self, slot: str, sdp: Address) -> None:
        """A re-INVITE moved the call's SDP address: a latched call stays latched."""
        entry = self.entries.get(slot)
        if entry is not None:
            entry.sdp = address_key(*sdp) if sdp[1] else -1
            if sdp[1]:
                entry.hosts = entry.hosts | {entry.sdp >> 16}
            self._dirty = True

    def remove(self, slot: str) -> None:
        if self.entries.pop(slot, None) is not None:
            self._dirty = True

    def take_latched(self) -> list[str]:
        """The slots latched since the last call (so the caller can note their address)."""
        latched, self.newly_latched = self.newly_latched, []
        return latched

    def latched(self, slot: str) -> Address | None:
        entry = self.entries.get(slot)
        if entry is None or entry.latched < 0:
            return None
        return socket.inet_ntoa((entry.latched >> 16).to_bytes(4, "big")), entry.latched & 0xFFFF

    def _rebuild(self) -> None:
        pairs: dict[int, str] = {}
        for slot, entry in self.entries.items():  # rule 1: latched first, else the SDP's
            key = entry.latched if entry.latched >= 0 else entry.sdp
            if key >= 0 and key not in pairs:
                pairs[key] = slot
        keys = sorted(pairs)
        self._keys = np.array(keys, np.int64)
        self._slots = [pairs[k] for k in keys]
        self._unlatched = np.array([self.entries[s].latched < 0 for s in self._slots], bool)
        self._dirty = False

    def route(
        self, ips: np.ndarray, ports: np.ndarray, now: float
    ) -> tuple[np.ndarray, list[str]]:
        """Each datagram's index into the returned slot list, or UNMATCHED (counted)."""
        if self._dirty:
            self._rebuild()
        keys = (ips.astype(np.int64) << 16) | ports.astype(np.int64)
        return self._routed(keys, self._match(keys), now)

    def route_names(self, names: np.ndarray, now: float) -> tuple[np.ndarray, list[str]]:
        """As `route`, from a batch's `struct sockaddr_in` rows (`bridge.net.mmsg`), matched in
        one compiled call (`bridge.rtp.native`) instead of a few numpy ones per batch."""
        if self._dirty:
            self._rebuild()
        count = len(names)
        keys = np.empty(count, np.int64)
        index = np.empty(count, np.int64)
        absent, unlatched = native.module().match(
            self._keys, self._keys.size, self._unlatched, count, names, keys, index
        )
        if absent or unlatched:
            return self._routed(keys, index, now)
        return index, self._slots

    def _routed(
        self, keys: np.ndarray, index: np.ndarray, now: float
    ) -> tuple[np.ndarray, list[str]]:
        unknown = np.flatnonzero(index < 0)
        if unknown.size:
            for key in np.unique(keys[unknown]).tolist():
                self._latch_unknown(int(key), now)
            if self._dirty:
                self._rebuild()
                index = self._match(keys)
            self.unmatched += int(np.count_nonzero(index < 0))
        self._latch_exact(index[index >= 0])
        return index, self._slots

    def _match(self, keys: np.ndarray) -> np.ndarray:
        known = self._keys
        if not known.size:
            return np.full(keys.shape, UNMATCHED, np.int64)
        at = np.searchsorted(known, keys).clip(0, known.size - 1)
        return np.where(known[at] == keys, at, UNMATCHED)

    def _latch_exact(self, index: np.ndarray) -> None:
        """Calls first heard at their SDP address latch to it (rule 1); an array test leaves
        the usual batch, every call latched already, with no Python per call."""
        waiting = index[self._unlatched[index]]
        for i in np.unique(waiting).tolist():
            slot = self._slots[i]
            entry = self.entries[slot]
            entry.latched = entry.sdp
            self._unlatched[i] = False
            self.newly_latched.append(slot)

    def _latch_unknown(self, key: int, now: float) -> None:
        ip = key >> 16
        candidates = [
            (slot, entry)
            for slot, entry in self.entries.items()
            if entry.latched < 0 and ip in entry.hosts
        ]
        # rule 2: one candidate, past its grace (a younger one counts too: never a guess
        # between two, which could send one caller's audio to another)
        if len(candidates) == 1 and now - candidates[0][1].added_at >= LATCH_GRACE_S:
            slot, entry = candidates[0]
            entry.latched = key
            self.newly_latched.append(slot)
            self._dirty = True
