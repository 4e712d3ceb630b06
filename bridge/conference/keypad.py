"""Keypad menu of a joined participant: key presses in, menu actions out (sans-I/O).

Bindings may be single keys or short sequences ("*1"); a partial sequence waits for the next key
until `timeout` seconds pass without one.
"""

from __future__ import annotations

import enum

from bridge.config import KeypadConfig


class MenuAction(enum.Enum):
    TOGGLE_MUTE = "toggle_mute"
    VOLUME_DOWN = "volume_down"
    VOLUME_UP = "volume_up"
    LEAVE = "leave"
    TOGGLE_RECORDING = "toggle_recording"


def bindings_from_config(keypad: KeypadConfig) -> dict[str, MenuAction]:
    return {
        getattr(keypad, action.value): action
        for action in MenuAction
        if getattr(keypad, action.value)
    }


class Keypad:
    def __init__(self, bindings: dict[str, MenuAction], timeout: float = 2.0) -> None:
        self.bindings = bindings
        self.timeout = timeout
        self._keys = ""
        self._last = 0.0

    def press(self, digit: str, now: float) -> MenuAction | None:
        if self._keys and now - self._last > self.timeout:
            self._keys = ""
        self._last = now
        for keys in (self._keys + digit, digit):
            if keys in self.bindings:
                self._keys = ""
                return self.bindings[keys]
            if any(binding.startswith(keys) for binding in self.bindings):
                self._keys = keys
                return None
        self._keys = ""
        return None
