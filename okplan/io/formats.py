"""Reading one partition in a task: its splits, in order, as blocks (lists) of records.

``text``: lines (str, or bytes with ``use_unicode=False``); ``json``: one parsed value per non-blank
line; ``whole``: ``(url, content)`` per file; ``pickle``: the records of the batches
``saveAsPickleFile`` wrote.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Callable, Iterator

from .filesystems import display_url
from .lines import decode_lines, read_line_chunks, split_lines
from .splits import Split

FORMATS = ("text", "json", "whole", "pickle")


def _open(split: Split) -> Any:
    return split.fs.open(split.path, "rb", compression=split.compression)


def _line_chunks(split: Split) -> Iterator[bytes]:
    if split.length == 0 and split.compression is None:
        return
    with _open(split) as f:
        if split.compression is not None:
            yield from read_line_chunks(f)
        else:
            yield from read_line_chunks(f, split.start, split.end)


def _text(splits: tuple[Split, ...], use_unicode: bool) -> Iterator[list]:
    decode: Callable[[bytes], list] = decode_lines if use_unicode else split_lines
    for split in splits:
        for chunk in _line_chunks(split):
            yield decode(chunk)


def _json(splits: tuple[Split, ...], use_unicode: bool) -> Iterator[list]:
    loads = json.loads
    for split in splits:
        for chunk in _line_chunks(split):
            block = []
            for line in decode_lines(chunk):
                if line and not line.isspace():
                    try:
                        block.append(loads(line))
                    except ValueError as e:
                        e.add_note(f"okplan: in a JSON line of {display_url(split.fs, split.path)}: {line[:80]!r}")
                        raise
            yield block


def _whole(splits: tuple[Split, ...], use_unicode: bool) -> Iterator[list]:
    for split in splits:
        with _open(split) as f:
            data = f.read()
        url = display_url(split.fs, split.path)
        if use_unicode:
            yield [(url, data.decode("utf-8", "replace"))]
        else:
            yield [(url.encode(), data)]


def _pickle(splits: tuple[Split, ...], use_unicode: bool) -> Iterator[list]:
    for split in splits:
        with _open(split) as f:
            unpickler = pickle.Unpickler(f)
            while True:
                try:
                    batch = unpickler.load()
                except EOFError:
                    break
                yield batch if isinstance(batch, list) else list(batch)


_READERS = {"text": _text, "json": _json, "whole": _whole, "pickle": _pickle}


def read_blocks(fmt: str, splits: tuple[Split, ...], use_unicode: bool = True) -> Iterator[list]:
    """The records of one partition (its ``splits``, in order), a block at a time.

    >>> from okplan.io.listing import list_files                          # doctest: +SKIP
    >>> [r for b in read_blocks("text", (Split(fs, "/tmp/a.txt", 0, 4),)) for r in b]  # doctest: +SKIP
    ['abc']
    """
    return _READERS[fmt](splits, use_unicode)
