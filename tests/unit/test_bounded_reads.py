"""engine.read_regular_file reads the container's tar only as far as the bound: a huge file, a
directory or a header flood at the path costs the host at most the bound."""

from __future__ import annotations

import io
import tarfile

import pytest

from cai import engine
from cai.errors import CaiError


def tar_header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class Stream:
    """What the archive API would send, in its 64 KiB chunks: `head`, then zeros without end,
    counted as taken."""

    def __init__(self, head: bytes) -> None:
        self.head, self.taken, self.closed = head, 0, False

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        chunk, self.head = (self.head[:65536], self.head[65536:]) if self.head else (b"\0" * 65536, b"")
        self.taken += len(chunk)
        return chunk

    def close(self) -> None:
        self.closed = True


@pytest.fixture()
def served(monkeypatch):
    def serve(head: bytes) -> Stream:
        stream = Stream(head)
        monkeypatch.setattr(engine, "get_archive", lambda *_: stream)
        return stream

    return serve


def test_a_small_regular_file_is_read(served):
    data = b"ssh-ed25519 AAAA key\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("ssh_host_ed25519_key.pub")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    stream = served(buffer.getvalue())
    assert engine.read_regular_file(None, "c", "/etc/ssh/ssh_host_ed25519_key.pub") == data
    assert stream.closed


@pytest.mark.parametrize("head", [tar_header("key.pub", 1 << 40), tar_header("ssh", 0, tarfile.DIRTYPE)],
                         ids=["a terabyte file", "a directory of anything"])
def test_a_huge_file_or_a_directory_is_none_after_its_first_header(served, head):
    stream = served(head)
    assert engine.read_regular_file(None, "c", "/etc/ssh/ssh_host_ed25519_key.pub") is None
    assert stream.taken < 1 << 17 and stream.closed


def test_headers_past_the_bound_are_an_error(served):
    stream = served(tar_header("k" * (1 << 20), 10))  # a PAX header of a megabyte
    with pytest.raises(CaiError) as raised:
        engine.read_regular_file(None, "c", "/etc/ssh/ssh_host_ed25519_key.pub")
    assert "Refusing to read c:/etc/ssh/ssh_host_ed25519_key.pub" in raised.value.message
    assert stream.taken <= (1 << 16) + engine._TAR_SLACK + 65536 and stream.closed
