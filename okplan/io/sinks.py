"""Writing one partition in a task: one part file (``part-00000``, with the codec's extension when
compressed, as Hadoop names them) written under a name no other attempt uses, inside the output's
``_temporary`` directory. The client renames it into place once every task succeeded (``commit.py``),
so a failed, retried or duplicated attempt never leaves a part file behind."""

from __future__ import annotations

import json
import pickle
import posixpath
import uuid
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterable, Iterator

#: records per write call when writing lines
_LINES_PER_WRITE = 8192
#: records per pickled batch when ``batchSize=0`` (PySpark then sizes batches itself)
AUTO_BATCH = 1024


def part_name(index: int, extension: str = "") -> str:
    """Hadoop's name of partition ``index``'s file.

    >>> part_name(3, ".gz")
    'part-00003.gz'
    """
    return f"part-{index:05d}{extension}"


def text_line(x: Any) -> bytes:
    """A record as ``saveAsTextFile`` writes it: bytes as they are, anything else as ``str(x)`` in UTF-8.

    >>> text_line(None), text_line(("a", 1)), text_line(b"raw")
    (b'None', b"('a', 1)", b'raw')
    """
    if type(x) is str:
        return x.encode("utf-8")
    if isinstance(x, (bytes, bytearray)):
        return bytes(x)
    return str(x).encode("utf-8")


def json_line(x: Any) -> bytes:
    """A record as ``saveAsJsonFile`` writes it: ``json.dumps`` (non-ASCII kept as UTF-8).

    >>> json_line({"a": [1, None]})
    b'{"a": [1, null]}'
    """
    try:
        return json.dumps(x, ensure_ascii=False).encode("utf-8")
    except TypeError as e:
        e.add_note("okplan: saveAsJsonFile writes json.dumps(record) per line; map records to dicts, lists, "
                   "str, numbers, bools or None first")
        raise


def _write_lines(f: BinaryIO, it: Iterable, encode: Any) -> None:
    batch: list[bytes] = []
    add = batch.append
    for x in it:
        add(encode(x))
        if len(batch) >= _LINES_PER_WRITE:
            batch.append(b"")
            f.write(b"\n".join(batch))
            batch.clear()
    if batch:
        batch.append(b"")
        f.write(b"\n".join(batch))


def _write_pickles(f: BinaryIO, it: Iterable, batch_size: int) -> None:
    size = batch_size or AUTO_BATCH
    batch: list = []
    for x in it:
        batch.append(x)
        if len(batch) >= size:
            pickle.dump(batch, f, pickle.HIGHEST_PROTOCOL)
            batch = []
    if batch:
        pickle.dump(batch, f, pickle.HIGHEST_PROTOCOL)


@dataclass(frozen=True)
class PartWriter:
    """The partition function of a save: writes partition ``i`` to a fresh attempt file under
    ``temp_dir`` and yields ``(i, attempt path)`` for the client to commit.

    ``fmt``: ``text``, ``json`` or ``pickle``; ``compression``: an fsspec codec or None.

    >>> writer = PartWriter(fs, "/data/out/_temporary/0", "text", "gzip", ".gz")     # doctest: +SKIP
    >>> list(writer(3, iter(["a", "b"])))                                           # doctest: +SKIP
    [(3, '/data/out/_temporary/0/attempt-5f0c.../part-00003.gz')]
    """

    fs: Any
    temp_dir: str
    fmt: str
    compression: str | None = None
    extension: str = ""
    batch_size: int = 10

    def __call__(self, index: int, it: Iterator) -> Iterator[tuple[int, str]]:
        attempt_dir = posixpath.join(self.temp_dir, f"attempt-{uuid.uuid4().hex}")
        path = posixpath.join(attempt_dir, part_name(index, self.extension))
        # never create the parents: once the client committed or aborted (``_temporary`` is gone), a late
        # or duplicated attempt fails here instead of leaving files behind
        self.fs.mkdir(attempt_dir, create_parents=False)
        with self.fs.open(path, "wb", compression=self.compression) as f:
            if self.fmt == "pickle":
                _write_pickles(f, it, self.batch_size)
            else:
                _write_lines(f, it, json_line if self.fmt == "json" else text_line)
        yield index, path
