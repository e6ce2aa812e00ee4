"""What `session logs` shows on a terminal (escapes.EscapeFilter) and the bound on the control
script's answer (proc.run_bounded): pure logic and a local child process, no engine."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cai import proc
from cai.escapes import EscapeFilter


def shown(data: bytes, piece: int | None = None) -> bytes:
    cleaner = EscapeFilter()
    if piece is None:
        return cleaner.feed(data) + cleaner.flush()
    return b"".join(cleaner.feed(data[i:i + piece]) for i in range(0, len(data), piece)) + cleaner.flush()


@pytest.mark.parametrize(("raw", "kept"), [
    (b"a\x1b]52;c;cm0gLXJmIH4=\x07b", b"ab"),  # OSC 52: a clipboard write
    (b"a\x1b]52;c;cm0=\x1b\\b", b"ab"),  # ... ended by ST
    (b"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", b"link"),  # OSC 8
    (b"x\x1bP+q544e\x1b\\y", b"xy"),  # DCS (XTGETTCAP)
    (b"\x1b_Gf=100;AAAA\x1b\\z", b"z"),  # APC (kitty graphics)
    (b"\x1b^pm\x1b\\\x1bXsos\x1b\\.", b"."),  # PM, SOS
    (b"\xc2\x9d52;c;eA==\xc2\x9cq", b"q"),  # OSC and ST as UTF-8 C1
    (b"\x9d0;t\x07w", b"w"),  # 8-bit OSC
    (b"\x1b]0;t\x1b[31mA", b"\x1b[31mA"),  # ESC ends the string: the next sequence is itself
    (b"\x1b]0;never ends", b""),
    (b"\x1b[31mred\x1b[0m \x1b[2K\x1b[1A", b"\x1b[31mred\x1b[0m \x1b[2K\x1b[1A"),  # CSI stays
    ("Ý é ü→ 𝄞".encode(), "Ý é ü→ 𝄞".encode()),  # 0x9D after a lead byte is text
    (b"tail\x1b", b"tail\x1b"), (b"\xc2", b"\xc2"), (b"\xc2\xa9", b"\xc2\xa9"),
])
def test_strings_go_and_the_rest_stays(raw, kept):
    assert shown(raw) == kept
    assert shown(raw, 1) == kept and shown(raw, 3) == kept  # cut anywhere between two reads


@given(st.binary(max_size=300), st.integers(1, 17))
def test_no_string_introducer_ever_passes(data, piece):
    out = shown(data, piece)
    assert out == shown(data)
    for introducer in (b"\x1b]", b"\x1bP", b"\x1b_", b"\x1b^", b"\x1bX", b"\xc2\x9d", b"\xc2\x90", b"\xc2\x9f"):
        assert introducer not in out


def test_a_flood_is_cut_at_the_bound():
    flood = "import sys\nwhile True: sys.stdout.write('x' * 65536)\n"
    done = proc.run_bounded([sys.executable, "-c", flood], timeout=30, limit=1 << 20)
    assert done.rc == proc.RC_TOO_LONG and len(done.out) == 1 << 20


def test_a_small_answer_and_its_code_pass():
    script = "import sys; data = sys.stdin.read(); print(len(data)); print('e', file=sys.stderr); sys.exit(3)"
    done = proc.run_bounded([sys.executable, "-c", script], timeout=30, limit=1 << 20, input="y" * 300_000)
    assert (done.rc, done.out, done.err) == (3, "300000\n", "e\n")


def test_a_silent_child_times_out():
    done = proc.run_bounded([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5, limit=100)
    assert done.rc == proc.RC_TIMEOUT
