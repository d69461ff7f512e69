"""A worker's view of Redis for one task: the ``BlockSource`` the task runner reads inputs from, and
the writer of the task's output. Both count bytes and time per phase for the job's metrics, and both
sign and check blocks with the cluster's block key (``serialization.block_key``).

Blocks are encoded in chunks of at most ``store.chunk_bytes`` (``encode_chunks``) and read back one chunk
at a time (``ChunkedRecords``, and a shuffle read decodes each bucket only when the task reaches it), so
neither Redis's 512 MB value limit nor a worker's memory bounds the size of a partition or a bucket.
Every chunk is a block of its own, signed and checked like any other.
"""

from __future__ import annotations

import time
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from ...physical.stage import Materialize, ShuffleWrite, Stage
from ..memory import TaskMemory
from ..memory import task_memory as task_memory_of
from ..serialization import UNKEYED, decompress, deserialize, open_block, seal, serialize
from ..spill import SpillDir, SpilledRecords, paused_gc, read_pickled_batches
from .spec import JobSpec
from .store import BlockStore, Keys, MissingBlockError


class TaskMeter:
    """Seconds per phase and bytes of one task."""

    __slots__ = ("key", "store", "serialize", "compress", "bytes_raw", "bytes_compressed", "bytes_read",
                 "bytes_written")

    def __init__(self, key: bytes = UNKEYED) -> None:
        self.key = key
        self.store = self.serialize = self.compress = 0.0
        self.bytes_raw = self.bytes_compressed = self.bytes_read = self.bytes_written = 0

    def decode(self, blob: bytes, what: str = "a block") -> Any:
        """A block's object; ``BlockIntegrityError`` (nothing unpickled) when its MAC does not match."""
        t0 = time.perf_counter()
        raw = decompress(open_block(blob, self.key, what))
        t1 = time.perf_counter()
        with paused_gc():  # unpickling makes no garbage; collections rescanning its records doubled it
            obj = deserialize(raw)
        self.compress += t1 - t0
        self.serialize += time.perf_counter() - t1
        self.bytes_read += len(blob)
        return obj

    def seal(self, raw: bytes) -> bytes:
        """A block of what is already pickled (a spill file's batch)."""
        t0 = time.perf_counter()
        blob = seal(raw, self.key)
        self.compress += time.perf_counter() - t0
        self.bytes_raw += len(raw)
        self.bytes_compressed += len(blob)
        return blob

    def encode(self, obj: Any) -> bytes:
        t0 = time.perf_counter()
        raw = serialize(obj)
        t1 = time.perf_counter()
        blob = seal(raw, self.key)
        self.serialize += t1 - t0
        self.compress += time.perf_counter() - t1
        self.bytes_raw += len(raw)
        self.bytes_compressed += len(blob)
        return blob

    def io_seconds(self) -> float:
        return self.store + self.serialize + self.compress


def task_memory(spec: JobSpec) -> TaskMemory:
    """The budget of a task of job ``spec`` (the client's setting, else this worker's), spilling to a
    directory of its own under this worker's ``OKPLAN_LOCAL_DIR``, which the caller removes."""
    return TaskMemory(task_memory_of(spec.get("task_memory")), SpillDir(f"{spec['job_id']}", wire=True))


class RedisBlocks:
    """Inputs of a task of job ``spec``, read from Redis in one round trip per input."""

    def __init__(self, store: BlockStore, spec: JobSpec, meter: TaskMeter):
        self.store = store
        self.spec = spec
        self.keys = Keys.of(spec)
        self.meter = meter
        #: small sources the client sent in the spec instead of Redis
        self.inline: dict[str, bytes] = spec.get("inline_blocks") or {}

    def _get(self, key: str, what: tuple[str, object, int]) -> Any:
        blob = self.inline.get(key)
        if blob is not None:
            return self.meter.decode(blob, f"block {key}")
        t0 = time.perf_counter()
        blob = self.store.get_many([key])[0]
        info = self.store.chunk_info(key) if blob is None else None
        self.meter.store += time.perf_counter() - t0
        if info is not None:
            n, count = info
            return ChunkedRecords(count, [self._fetch(self.store.get_field, key, str(i), what) for i in range(n)],
                                  lambda blob: self.meter.decode(blob, f"a chunk of block {key}"))
        if blob is None:
            raise MissingBlockError([what])
        return self.meter.decode(blob, f"block {key}")

    def _fetch(self, get: Callable, key: str, field: Any, what: tuple) -> Callable[[], bytes]:
        def fetch() -> bytes:
            t0 = time.perf_counter()
            blob = get(key, field)
            self.meter.store += time.perf_counter() - t0
            if blob is None:
                raise MissingBlockError([what])
            return blob
        return fetch

    def hands_over(self, shuffle_id: int) -> bool:
        """Buckets read from Redis are decoded afresh for their reader: it may grow them in place (a
        groupByKey's merge then takes a map output's first list of a key instead of copying it)."""
        return True

    def source(self, source_id: str, index: int) -> list:
        return self._get(self.keys.source(source_id, index), ("source", source_id, index))

    def shuffle_buckets(self, shuffle_id: int, reduce_index: int,
                        maps: tuple[int, int] | None = None) -> list[list]:
        first, end = maps if maps is not None else (0, self.spec["shuffles"][shuffle_id])
        t0 = time.perf_counter()
        rows = self.store.get_buckets([self.keys.shuffle(shuffle_id, m) for m in range(first, end)], reduce_index)
        self.meter.store += time.perf_counter() - t0
        missing = [("shuffle", shuffle_id, first + m) for m, row in enumerate(rows) if row is False]
        if missing:
            raise MissingBlockError(missing)
        return self._decoded(shuffle_id, reduce_index, rows, first)

    def _decoded(self, shuffle_id: int, reduce_index: int, rows: list, first: int = 0) -> Iterator[list]:
        """Each bucket decoded only when the task reaches it: the compressed blobs are what waits."""
        decode = self.meter.decode
        for m, row in enumerate(rows, first):
            key = self.keys.shuffle(shuffle_id, m)
            if type(row) is int:
                yield from joined(decode(self._bucket_chunk(key, reduce_index, i, ("shuffle", shuffle_id, m)),
                                         f"chunk {i} of bucket {reduce_index} of block {key}") for i in range(row))
            elif row:
                yield decode(row, f"bucket {reduce_index} of block {key}")

    def _bucket_chunk(self, key: str, reduce_index: int, i: int, what: tuple) -> bytes:
        t0 = time.perf_counter()
        blob = self.store.bucket_chunk(key, reduce_index, i)
        self.meter.store += time.perf_counter() - t0
        if blob is None:
            raise MissingBlockError([what])
        return blob

    def materialized(self, cache_id: str, index: int) -> list:
        scope = self.spec["cache_scopes"].get(cache_id, "context")
        kind = "cache" if scope == "context" else "mat"
        return self._get(self.keys.materialized(cache_id, scope, index), (kind, cache_id, index))


def write_output(store: BlockStore, spec: JobSpec, stage: Stage, partition: int, value: Any,
                 meter: TaskMeter) -> tuple[bool, bytes]:
    """Put a task's output where its readers look. Returns ``(stored, inline)``: a result small
    enough travels in the reply (``inline``), a larger one goes to Redis (``stored``)."""
    # no cyclic collection while the output is encoded: a spilled output is read back from disk
    # batch by batch, and collections scanning the heap after every batch took most of the time
    with paused_gc():
        return _write_output(store, spec, stage, partition, value, meter)


def _write_output(store: BlockStore, spec: JobSpec, stage: Stage, partition: int, value: Any,
                  meter: TaskMeter) -> tuple[bool, bytes]:
    keys = Keys.of(spec)
    out = stage.output
    ttl = spec["ttl"]
    limit = store.chunk_bytes
    if isinstance(out, ShuffleWrite):
        small: dict[int, bytes] = {}
        big: list[tuple[int, Iterator[bytes]]] = []
        for r, b in enumerate(value):
            if not b:
                continue
            chunks = encode_chunks(b, meter.encode, limit, seal=meter.seal)
            first = next(chunks)
            second = next(chunks, None)
            if second is None:
                small[r] = first
            else:
                big.append((r, _counting(_chain(first, second, chunks), meter)))
        t0 = time.perf_counter()
        # a kept shuffle outlives the job as caches do (its client refreshes it)
        kept = out.shuffle_id in keys.kept
        store.put_buckets(keys.shuffle(out.shuffle_id, partition), small, spec["cache_ttl"] if kept else ttl, big)
        meter.store += time.perf_counter() - t0
        meter.bytes_written += sum(map(len, small.values()))
        return False, b""
    if isinstance(out, Materialize):
        t0 = time.perf_counter()
        store.put_chunked(keys.materialized(out.cache_id, out.scope, partition),
                          _counting(encode_chunks(value, meter.encode, limit, seal=meter.seal), meter), len(value),
                          spec["cache_ttl"] if out.scope == "context" else ttl)
        meter.store += time.perf_counter() - t0
        return False, b""
    if type(value) is list:
        chunks = encode_chunks(value, meter.encode, limit)
        blob = next(chunks)
        second = next(chunks, None)
        if second is None and len(blob) <= spec["inline_max"]:
            return False, blob
        t0 = time.perf_counter()
        if second is None:
            _put_whole(store, keys.result(partition), blob, limit, ttl)
            meter.bytes_written += len(blob)
        else:
            store.put_chunked(keys.result(partition), _counting(_chain(blob, second, chunks), meter), len(value), ttl)
        meter.store += time.perf_counter() - t0
        return True, b""
    blob = meter.encode(value)
    if len(blob) <= spec["inline_max"]:
        return False, blob
    t0 = time.perf_counter()
    _put_whole(store, keys.result(partition), blob, limit, ttl)
    meter.store += time.perf_counter() - t0
    meter.bytes_written += len(blob)
    return True, b""


def _put_whole(store: BlockStore, key: str, blob: bytes, limit: int, ttl: int | None) -> None:
    """One encoded block that cannot be cut between records (one object, or a list of one big record):
    a plain value up to a chunk, else its bytes in pieces (no Redis value may exceed its size limit)."""
    if len(blob) <= limit:
        store.put_many([(key, blob)], ttl)
    else:
        store.put_chunked(key, byte_pieces(blob, limit), BYTE_PIECES, ttl)


#: the record count of a chunked block whose chunks are pieces of one encoded block (joined, then decoded)
BYTE_PIECES = -1


def byte_pieces(blob: bytes, limit: int) -> Iterator[bytes]:
    """``blob`` in pieces of at most ``limit`` bytes.

    >>> list(byte_pieces(b"abcde", 2))
    [b'ab', b'cd', b'e']
    """
    for i in range(0, len(blob), limit):
        yield blob[i:i + limit]


#: records per chunk of a block a task reads: a chunk is decoded whole, and the decoded records (about
#: ten times their encoded size) count against the reading task's memory budget
CHUNK_RECORDS = 65536
#: records encoded first to learn a block's bytes per record
_SAMPLE = 64


def encode_chunks(records: Iterable, encode: Callable[[Any], bytes], limit: int,
                  max_records: int = CHUNK_RECORDS, seal: Callable[[bytes], bytes] | None = None) -> Iterator[bytes]:
    """A partition or bucket (a list or ``SpilledRecords``) as encoded lists of at most ~``limit``
    bytes and ``max_records`` records each; decoded and concatenated they are the records. A small
    list is encoded once, as before; a spilled one streams from disk, one slice in memory at a time,
    or with ``seal`` (which makes a block of pickled bytes) one spill batch per chunk, never unpickled.

    >>> from okplan.exec.serialization import encode_block, decode_block
    >>> chunks = list(encode_chunks(list(range(10_000)), encode_block, 4096))
    >>> max(map(len, chunks)) <= 4096, sum(len(decode_block(b)) for b in chunks)
    (True, 10000)
    """
    if type(records) is list:
        n = len(records)
        step = n
        if n > _SAMPLE:
            # bytes per record from a sample, so a big partition is never encoded whole first; pickled
            # bytes count: a chunk is decoded whole, and lz4 shrinks repetitive records a hundredfold
            sample = records[:_SAMPLE]
            per = max(1.0, len(serialize(sample)) / _SAMPLE)  # lz4 never grows it by more than a header
            step = max(1, min(max_records, int(limit // 2 / per)))
        if step >= n:
            blob = encode(records)
            if len(blob) <= limit or n < 2:
                yield from _fitted(records, blob, encode, limit)
                return
            step = max(1, n // (2 * -(-len(blob) // limit)))  # the sample misjudged: aim at half the limit
            del blob
        for i in range(0, n, step):
            part = records[i:i + step]
            yield from _fitted(part, encode(part), encode, limit)
        return
    if seal is not None and type(records) is SpilledRecords:
        yield from _spilled_chunks(records, encode, seal, limit, max_records)
        return
    it = iter(records)
    step = min(_SAMPLE, max_records)
    produced = False
    raw_per = 0.0
    while True:
        part = list(islice(it, step))
        if not part:
            break
        if not produced:
            raw_per = len(serialize(part[:16])) / min(16, len(part))
        blob = encode(part)
        produced = True
        size = len(blob)
        yield from _fitted(part, blob, encode, limit)
        del blob
        # size the next slice from this one's bytes per record (and the pickled size, as for lists)
        per = max(1.0, size / len(part), raw_per)
        step = max(1, min(max_records, int(limit // 2 / per)))
    if not produced:
        yield encode([])


def _spilled_chunks(records: SpilledRecords, encode: Callable[[Any], bytes], seal: Callable[[bytes], bytes],
                    limit: int, max_records: int) -> Iterator[bytes]:
    """Chunks of a spilled block: a spill batch is a pickled list of records, as a block's payload is,
    so it is only compressed again and sealed (unpickling and pickling it again cost most of a spilling
    map task's output). A batch naming ``__main__`` is encoded again (``serialize`` ships such classes
    by value), and one bigger than a chunk is cut (``_fitted``)."""
    produced = False
    for run in records.runs:
        for raw in read_pickled_batches(run):
            produced = True
            blob = None if b"__main__" in raw else seal(raw)
            if blob is not None and len(blob) <= limit:
                yield blob
                continue
            del blob
            with paused_gc():
                part = deserialize(raw)
            del raw
            yield from _fitted(part, encode(part), encode, limit)
    if records.tail or not produced:
        yield from encode_chunks(records.tail, encode, limit, max_records)


def _fitted(part: list, blob: bytes, encode: Callable[[Any], bytes], limit: int) -> Iterator[bytes]:
    """``blob`` (``part`` encoded) if it fits a chunk; else ``part`` in halves, down to single records,
    and a record bigger than a chunk in pieces of its pickled bytes (``RecordPiece``)."""
    if len(blob) <= limit:
        yield blob
        return
    del blob
    if len(part) > 1:
        half = len(part) // 2
        for side in (part[:half], part[half:]):
            yield from _fitted(side, encode(side), encode, limit)
        return
    raw = serialize(part[0])
    size = max(1, limit // 2)  # a piece's block adds a pickle header, lz4's worst case and a MAC
    for i in range(0, len(raw), size):
        yield encode(RecordPiece(raw[i:i + size], i + size >= len(raw)))


class RecordPiece(NamedTuple):
    """A block holding a piece of the pickled bytes of one record bigger than a chunk (no Redis value
    may exceed 512 MB, and a record may): readers join the pieces (``joined``) and unpickle the record;
    every piece's MAC was checked when its block was decoded.

    >>> import os; from okplan.exec.serialization import encode_block, decode_block
    >>> blobs = list(encode_chunks([b"x" * 10_000, os.urandom(5_000)], encode_block, 2_048))
    >>> records = [r for chunk in joined(decode_block(b) for b in blobs) for r in chunk]
    >>> len(blobs) > 2, [len(r) for r in records]
    (True, [10000, 5000])
    """

    data: bytes
    last: bool


def joined(chunks: Iterable[Any]) -> Iterator[list]:
    """Decoded chunks of a block as lists of records, the pieces of a record bigger than a chunk
    joined and unpickled (see ``RecordPiece``)."""
    pieces: list[bytes] = []
    for chunk in chunks:
        if type(chunk) is not RecordPiece:
            yield chunk
            continue
        pieces.append(chunk.data)
        if chunk.last:
            data = b"".join(pieces)
            pieces.clear()
            yield [deserialize(data)]


def _chain(a: bytes, b: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield a
    yield b
    yield from rest


def _counting(chunks: Iterator[bytes], meter: TaskMeter) -> Iterator[bytes]:
    for blob in chunks:
        meter.bytes_written += len(blob)
        yield blob


class ChunkedRecords:
    """The records of a block stored in chunks, fetched and decoded one chunk at a time when iterated
    (a sized iterable, like ``SpilledRecords``); pickles as a plain list."""

    __slots__ = ("count", "fetches", "decode")

    def __init__(self, count: int, fetches: list[Callable[[], bytes]], decode: Callable[[bytes], list]):
        self.count = count
        self.fetches = fetches
        self.decode = decode

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator:
        for chunk in joined(self.decode(fetch()) for fetch in self.fetches):
            yield from chunk

    def __reduce__(self):
        return list, (list(self),)
