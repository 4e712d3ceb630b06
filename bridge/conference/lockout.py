"""Room-code brute force, counted and stopped (sans-I/O): wrong codes are counted per source
address and per room in a sliding window. Past `attempts` wrong codes one source is locked out
for `lock_s` (its calls are refused with 403 and its calls in a code dialogue are hung up);
past `room_alarm` wrong codes for one room, from any number of sources, an alarm is raised
(the operator's cue to change the code) but nobody is locked out, so a distributed attacker
cannot lock the room's own people out."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

MAX_TRACKED = 100_000  # sources and rooms remembered at once: a spoofed flood cannot grow memory


@dataclass(frozen=True)
class LockoutRules:
    attempts: int = 10  # wrong codes from one source within the window: locked out
    window_s: float = 600.0
    lock_s: float = 900.0
    room_alarm: int = 30  # wrong codes for one room within the window: alarm (0: never)


@dataclass(frozen=True)
class Lockout:
    """A limit was crossed: `scope` "source" (a source address, now refused until `until`) or
    "room" (an alarm for the room; `until` is when its window ends)."""

    scope: str
    source: str
    room: str
    attempts: int
    until: float


@dataclass
class GuardCounters:
    wrong_codes: int = 0
    source_lockouts: int = 0
    room_alarms: int = 0
    refused_locked: int = 0  # calls refused because their source was locked out


@dataclass
class CodeGuard:
    rules: LockoutRules
    counters: GuardCounters = field(default_factory=GuardCounters)
    _by_source: dict[str, deque[float]] = field(default_factory=dict)
    _by_room: dict[str, deque[float]] = field(default_factory=dict)
    _locked: dict[str, float] = field(default_factory=dict)  # source -> locked until
    _alarmed: dict[str, float] = field(default_factory=dict)  # room -> alarm raised until

    def locked(self, source: str, now: float) -> bool:
        until = self._locked.get(source)
        if until is None:
            return False
        if now >= until:
            del self._locked[source]
            return False
        return True

    def refuse(self, source: str, now: float) -> bool:
        """True (and counted) when a new call from `source` must be refused."""
        if self.locked(source, now):
            self.counters.refused_locked += 1
            return True
        return False

    def wrong(self, source: str, room: str, now: float) -> list[Lockout]:
        """Count one wrong code (`room` empty when the caller did not name one): the limits it
        crossed, each reported once."""
        self.counters.wrong_codes += 1
        crossed = []
        tries = self._count(self._by_source, source, now)
        if tries >= self.rules.attempts and not self.locked(source, now):
            until = now + self.rules.lock_s
            self._locked[source] = until
            self._by_source.pop(source, None)  # a fresh count after the lockout ends
            self.counters.source_lockouts += 1
            crossed.append(Lockout("source", source, room, tries, until))
        if room and self.rules.room_alarm:
            tries = self._count(self._by_room, room, now)
            if tries >= self.rules.room_alarm and self._alarmed.get(room, 0.0) <= now:
                self._alarmed[room] = now + self.rules.window_s
                self.counters.room_alarms += 1
                crossed.append(Lockout("room", source, room, tries, self._alarmed[room]))
        return crossed

    def _count(self, counts: dict[str, deque[float]], key: str, now: float) -> int:
        """Record one attempt for `key` now; how many it has within the window."""
        times = counts.get(key)
        if times is None:
            if len(counts) >= MAX_TRACKED:
                self._forget_stale(counts, now)
            times = counts[key] = deque()
        times.append(now)
        horizon = now - self.rules.window_s
        while times and times[0] <= horizon:
            times.popleft()
        return len(times)

    def _forget_stale(self, counts: dict[str, deque[float]], now: float) -> None:
        horizon = now - self.rules.window_s
        for key in [k for k, times in counts.items() if not times or times[-1] <= horizon]:
            del counts[key]
        while len(counts) >= MAX_TRACKED:  # still full of live keys: drop the oldest
            del counts[next(iter(counts))]
        for table in (self._locked, self._alarmed):
            for key in [k for k, until in table.items() if until <= now]:
                del table[key]
