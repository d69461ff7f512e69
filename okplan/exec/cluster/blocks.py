"""A worker's view of Redis for one task: the ``BlockSource`` the task runner reads inputs from, and
the writer of the task's output. Both count bytes and time per phase for the job's metrics, and both
sign and check blocks with the cluster's block key (``serialization.block_key``)."""

from __future__ import annotations

import time
from typing import Any

from ...physical.stage import Materialize, ShuffleWrite, Stage
from ..serialization import UNKEYED, decompress, deserialize, open_block, seal, serialize
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
        obj = deserialize(raw)
        self.compress += t1 - t0
        self.serialize += time.perf_counter() - t1
        self.bytes_read += len(blob)
        return obj

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


class RedisBlocks:
    """Inputs of a task of job ``spec``, read from Redis in one round trip per input."""

    def __init__(self, store: BlockStore, spec: JobSpec, meter: TaskMeter):
        self.store = store
        self.spec = spec
        self.keys = Keys(spec["job_id"], spec["client"])
        self.meter = meter

    def _get(self, key: str, what: tuple[str, object, int]) -> Any:
        t0 = time.perf_counter()
        blob = self.store.get_many([key])[0]
        self.meter.store += time.perf_counter() - t0
        if blob is None:
            raise MissingBlockError([what])
        return self.meter.decode(blob, f"block {key}")

    def source(self, source_id: str, index: int) -> list:
        return self._get(self.keys.source(source_id, index), ("source", source_id, index))

    def shuffle_buckets(self, shuffle_id: int, reduce_index: int) -> list[list]:
        maps = self.spec["shuffles"][shuffle_id]
        t0 = time.perf_counter()
        rows = self.store.get_buckets([self.keys.shuffle(shuffle_id, m) for m in range(maps)], reduce_index)
        self.meter.store += time.perf_counter() - t0
        missing = [("shuffle", shuffle_id, m) for m, row in enumerate(rows) if row is False]
        if missing:
            raise MissingBlockError(missing)
        decode = self.meter.decode
        return [decode(row, f"bucket {reduce_index} of block {self.keys.shuffle(shuffle_id, m)}")
                for m, row in enumerate(rows) if row]

    def materialized(self, cache_id: str, index: int) -> list:
        scope = self.spec["cache_scopes"].get(cache_id, "context")
        kind = "cache" if scope == "context" else "mat"
        return self._get(self.keys.materialized(cache_id, scope, index), (kind, cache_id, index))


def write_output(store: BlockStore, spec: JobSpec, stage: Stage, partition: int, value: Any,
                 meter: TaskMeter) -> tuple[bool, bytes]:
    """Put a task's output where its readers look. Returns ``(stored, inline)``: a result small
    enough travels in the reply (``inline``), a larger one goes to Redis (``stored``)."""
    keys = Keys(spec["job_id"], spec["client"])
    out = stage.output
    ttl = spec["ttl"]
    if isinstance(out, ShuffleWrite):
        encoded = {r: meter.encode(b) for r, b in enumerate(value) if b}
        t0 = time.perf_counter()
        store.put_buckets(keys.shuffle(out.shuffle_id, partition), encoded, ttl)
        meter.store += time.perf_counter() - t0
        meter.bytes_written += sum(map(len, encoded.values()))
        return False, b""
    if isinstance(out, Materialize):
        blob = meter.encode(value)
        t0 = time.perf_counter()
        store.put_many([(keys.materialized(out.cache_id, out.scope, partition), blob)],
                       spec["cache_ttl"] if out.scope == "context" else ttl)
        meter.store += time.perf_counter() - t0
        meter.bytes_written += len(blob)
        return False, b""
    blob = meter.encode(value)
    if len(blob) <= spec["inline_max"]:
        return False, blob
    t0 = time.perf_counter()
    store.put_many([(keys.result(partition), blob)], ttl)
    meter.store += time.perf_counter() - t0
    meter.bytes_written += len(blob)
    return True, b""
