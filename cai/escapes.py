"""Terminal output that someone else wrote, made safe to show: OSC, DCS, APC, PM and SOS strings go.

Those strings make a terminal do things beyond drawing text: OSC 52 writes the clipboard, OSC 8
makes links, DCS and APC reach terminal-specific features (sixel, kitty's graphics and file
transfer, tmux passthrough). A session's log is written by the agent (and, before, by any
container on the data volume), so `cai session logs` drops every such string on a terminal:
the introducer (ESC ] P _ ^ X, or its C1 form, 8-bit or UTF-8), the payload, and the
terminator (BEL, ST as ESC \\ or C1). CSI sequences (colours, cursor moves) and text pass as
they are. The filter works on a stream: a sequence cut between two reads is still found.

The terminal never sees an introducer, so it never enters a string state: whatever the filter
lets through is drawn or parsed as ordinary output. Misjudging where a string ends can only
drop too much or print a payload as text, never send one.
"""

from __future__ import annotations

import re

_ESC, _BEL, _CAN, _SUB = 0x1B, 0x07, 0x18, 0x1A
_STRING_FINALS = frozenset(b"]P_^X")  # after ESC: OSC, DCS, APC, PM, SOS
_STRING_C1 = frozenset((0x90, 0x98, 0x9D, 0x9E, 0x9F))  # the same five as C1 controls
_ST_C1 = 0x9C
_UTF8_C1_LEAD = 0xC2  # U+0080..U+009F in UTF-8: C2 80..C2 9F

_PLAIN = re.compile(rb"[^\x1b\x80-\x9f\xc2-\xf4]+")  # bytes that need no look in text

_TEXT, _AFTER_ESC, _AFTER_C2, _STRING, _STRING_ESC, _STRING_C2 = range(6)


class EscapeFilter:
    """feed(bytes) -> bytes, with the state between calls kept."""

    __slots__ = ("_state", "_continuations")

    def __init__(self) -> None:
        self._state = _TEXT
        self._continuations = 0  # UTF-8 continuation bytes still due: 0x9D there is text, not OSC

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        at, end = 0, len(data)
        while at < end:
            if self._state == _TEXT and not self._continuations:
                plain = _PLAIN.match(data, at)
                if plain is not None:
                    out += plain.group()
                    at = plain.end()
                    continue
            self._step(data[at], out)
            at += 1
        return bytes(out)

    def flush(self) -> bytes:
        """What is held back at the end of the stream (a lone ESC or C2 passes; a cut string does not)."""
        state, self._state = self._state, _TEXT
        return {_AFTER_ESC: b"\x1b", _AFTER_C2: b"\xc2"}.get(state, b"")

    def _step(self, byte: int, out: bytearray) -> None:
        state = self._state
        if state == _STRING:
            if byte in (_BEL, _CAN, _SUB, _ST_C1):
                self._state = _TEXT
            elif byte == _ESC:
                self._state = _STRING_ESC
            elif byte == _UTF8_C1_LEAD:
                self._state = _STRING_C2
            return
        if state == _STRING_ESC:
            if byte == 0x5C:  # ESC \ is ST
                self._state = _TEXT
                return
            self._state = _TEXT  # a terminal ends the string at ESC and starts a new sequence
            self._step(_ESC, out)
            self._step(byte, out)
            return
        if state == _STRING_C2:
            self._state = _TEXT if byte == _ST_C1 else _STRING
            return
        if state == _AFTER_ESC:
            if byte in _STRING_FINALS:
                self._state = _STRING
                return
            self._state = _TEXT
            out.append(_ESC)
            self._step(byte, out)
            return
        if state == _AFTER_C2:
            self._state = _TEXT
            if byte in _STRING_C1:
                self._state = _STRING
                return
            out.append(_UTF8_C1_LEAD)
            if 0x80 <= byte <= 0xBF:
                out.append(byte)
            else:
                self._continuations = 0
                self._step(byte, out)
            return
        # text
        if self._continuations and 0x80 <= byte <= 0xBF:
            self._continuations -= 1
            out.append(byte)
            return
        self._continuations = 0
        if byte == _ESC:
            self._state = _AFTER_ESC
        elif byte == _UTF8_C1_LEAD:
            self._state = _AFTER_C2
        elif byte in _STRING_C1:
            self._state = _STRING
        else:
            if 0xC3 <= byte <= 0xDF:
                self._continuations = 1
            elif 0xE0 <= byte <= 0xEF:
                self._continuations = 2
            elif 0xF0 <= byte <= 0xF4:
                self._continuations = 3
            out.append(byte)
