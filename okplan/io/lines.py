"""Lines of a byte range, by Hadoop's LineRecordReader rule, so that splits of one file together give
every line exactly once.

A line ends at ``\\n``, ``\\r\\n`` or a lone ``\\r`` (as Hadoop's reader), and belongs to the split in
which its first byte lies. So a reader whose split does not start at 0 skips ahead to the first line
start at or after ``start`` (a partial line belongs to the split before), and the reader whose split
ends inside a line reads past its end to finish it. Lines come in blocks (lists), read ``BLOCK`` bytes
at a time, so a split never has to fit in memory at once.
"""

from __future__ import annotations

from typing import BinaryIO, Iterator

BLOCK = 1 << 20
_NL, _CR = 10, 13


def line_start_at_or_after(f: BinaryIO, start: int) -> int:
    r"""The first position ``>= start`` where a line begins; ``f`` is left there.

    >>> import io
    >>> line_start_at_or_after(io.BytesIO(b"ab\r\ncd"), 3)
    4
    """
    if start == 0:
        f.seek(0)
        return 0
    f.seek(start - 1)
    prev = f.read(1)
    pos = start
    if prev == b"\n":
        return pos
    if prev == b"\r":
        nxt = f.read(1)
        if nxt != b"\n":
            f.seek(pos)
            return pos
        return pos + 1  # f is after the \n already
    # inside a line: skip to after its terminator
    while True:
        chunk = f.read(1 << 16)
        if not chunk:
            return pos
        i_n, i_r = chunk.find(b"\n"), chunk.find(b"\r")
        if i_n < 0 and i_r < 0:
            pos += len(chunk)
            continue
        if i_r < 0 or 0 <= i_n < i_r:
            new = pos + i_n + 1
        elif i_r + 1 < len(chunk):
            new = pos + i_r + (2 if chunk[i_r + 1] == _NL else 1)
        else:
            new = pos + i_r + 1
            f.seek(new)
            if f.read(1) == b"\n":
                new += 1
        f.seek(new)
        return new


def read_line_chunks(f: BinaryIO, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    r"""Chunks of whole lines (terminators kept, see ``split_lines``) whose first byte lies in
    ``[start, end)``; ``end=None`` reads to the end of the stream (compressed files are read whole).

    >>> import io
    >>> data = b"one\ntwo\r\nthree"
    >>> [l for s in (0, 5) for c in read_line_chunks(io.BytesIO(data), s, s + 5) for l in split_lines(c)]
    [b'one', b'two', b'three']
    """
    pos = line_start_at_or_after(f, start) if start else 0
    remaining = None if end is None else end - pos
    if remaining is not None and remaining <= 0:
        return
    carry = b""
    while remaining is None or remaining > 0:
        chunk = f.read(BLOCK if remaining is None else min(BLOCK, remaining))
        if not chunk:
            break
        if remaining is not None:
            remaining -= len(chunk)
        buf = carry + chunk if carry else chunk
        # cut after the last \n: everything before it is whole lines (a \r\n pair stays together)
        cut = buf.rfind(b"\n")
        if cut < 0:
            carry = buf
            continue
        carry = buf[cut + 1:]
        yield buf[:cut + 1]
    if carry:
        if remaining is not None and remaining <= 0 and not carry.endswith(b"\r"):
            carry += _rest_of_line(f)
        yield carry


def split_lines(chunk: bytes) -> list[bytes]:
    r"""The lines of a chunk, without terminators (``\n``, ``\r\n`` or ``\r``; a final terminator ends
    the last line, it does not start an empty one).

    >>> split_lines(b"a\r\n\nb\rc")
    [b'a', b'', b'b', b'c']
    """
    return chunk.splitlines()


def decode_lines(chunk: bytes) -> list[str]:
    r"""``split_lines`` decoded as UTF-8 (invalid bytes become U+FFFD, as Hadoop's Text does). A chunk
    without ``\r`` is decoded at once and split on ``\n`` (``str.splitlines`` would also split on form
    feeds and Unicode separators, which Hadoop keeps inside lines).

    >>> decode_lines("é\nü\n".encode())
    ['é', 'ü']
    """
    if b"\r" not in chunk:
        lines = chunk.decode("utf-8", "replace").split("\n")
        if chunk.endswith(b"\n"):
            lines.pop()
        return lines
    return [line.decode("utf-8", "replace") for line in chunk.splitlines()]


def _rest_of_line(f: BinaryIO) -> bytes:
    """The bytes up to (not including) the next line terminator: the end of a line that began before
    the split's end."""
    parts = []
    while True:
        chunk = f.read(1 << 16)
        if not chunk:
            break
        i_n, i_r = chunk.find(b"\n"), chunk.find(b"\r")
        hits = [i for i in (i_n, i_r) if i >= 0]
        if hits:
            parts.append(chunk[:min(hits)])
            break
        parts.append(chunk)
    return b"".join(parts)
