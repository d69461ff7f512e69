"""The Redis block store: where partitions, shuffle buckets, caches, results and named datasets live.

Keys (all under ``okplan:``; a job's keys expire, so a crashed client leaks nothing for long)::

    okplan:job:{job}:src:{source}:{i}     a source partition the client uploaded
    okplan:job:{job}:shuf:{shuffle}:{m}   hash: bucket per reduce index of map task m, plus field "m"
    okplan:job:{job}:mat:{cache}:{i}      a subplan shared within the job
    okplan:job:{job}:res:{p}              a result too large for a message
    okplan:cache:{client}:{cache}:{i}     a cache() partition, until unpersist()/stop()
    okplan:kept:{client}:{keep}:{m}       hash: map task m's buckets of a shuffle kept for later jobs
                                          (shuffle reuse), until its datasets are gone or stop()
    okplan:named:{label}                  hash: "n" and one field per partition of a named dataset
    okplan:named                          set of the labels of named datasets

Every method does one round trip (pipelines, HMGET, EXISTS of many keys) whatever the number of blocks,
except for big blocks: a block encoded bigger than ``OKPLAN_BLOCK_CHUNK`` (64m) is stored in chunks,
one round trip each (Redis refuses values over 512 MB). A chunked block is a hash at the block's key
(fields ``0..n-1``, ``n`` and ``count``); a chunked shuffle bucket ``r`` is fields ``r:0..`` and ``n:r`` of
the map task's hash. When Redis answers OOM (it is at its ``maxmemory``), blocks go to the spill tier
(``tier.py``) if one is configured, else the job fails with ``StoreFullError`` saying what to set.

>>> Keys("j1").shuffle(0, 3)
'okplan:job:j1:shuf:0:3'
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator, Sequence
from urllib.parse import quote

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ...errors import ClusterUnavailableError, OkplanError
from ..memory import parse_size
from .tier import SpillTier

PREFIX = "okplan:"
NAMED_SET = PREFIX + "named"
#: field of a shuffle hash that says "this map task's output exists" (its buckets may all be empty)
MARK = b"m"
_DELETE_CHUNK = 1000
#: fields of a chunked block's hash
N_FIELD = b"n"
COUNT_FIELD = b"count"
DEFAULT_CHUNK = "64m"


def chunk_bytes() -> int:
    """Encoded size past which a block is stored in chunks: ``OKPLAN_BLOCK_CHUNK`` (default 64m)."""
    return max(1, parse_size(os.environ.get("OKPLAN_BLOCK_CHUNK") or DEFAULT_CHUNK, "OKPLAN_BLOCK_CHUNK"))


class StoreUnavailableError(ClusterUnavailableError):
    """Redis could not be reached or failed while reading or writing blocks."""


class StoreFullError(StoreUnavailableError):
    """Redis is at its ``maxmemory`` and there is no spill tier, or the tier's disk is full too."""


class MissingBlockError(OkplanError):
    """Blocks a task needs are not in Redis (evicted, expired, or Redis restarted).

    ``missing`` lists ``(kind, id, index)``: kind is ``source``, ``shuffle``, ``mat`` or ``cache``.
    """

    def __init__(self, missing: list[tuple[str, object, int]]):
        self.missing = missing
        kind, ident, index = missing[0]
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        super().__init__(f"block {kind} {ident}[{index}]{more} is missing from Redis")

    def __reduce__(self):
        return (MissingBlockError, (self.missing,))


class Keys:
    """Key names of one job (and of one client's caches). ``kept``: shuffle id -> keep id of the
    job's shuffles whose output outlives it (written by the job or reused from an earlier one).

    >>> Keys("j1", "c1", {0: "shuffle-7"}).shuffle(0, 3)
    'okplan:kept:c1:shuffle-7:3'
    """

    __slots__ = ("job", "client", "kept")

    def __init__(self, job: str, client: str = "", kept: dict[int, str] | None = None):
        self.job = job
        self.client = client
        self.kept = kept or {}

    @classmethod
    def of(cls, spec: dict) -> "Keys":
        """The keys of the job ``spec`` describes."""
        return cls(spec["job_id"], spec["client"], spec.get("kept"))

    def source(self, source_id: str, i: int) -> str:
        return f"{PREFIX}job:{self.job}:src:{source_id}:{i}"

    def shuffle(self, shuffle_id: int, m: int) -> str:
        keep_id = self.kept.get(shuffle_id)
        if keep_id is not None:
            return kept_key(self.client, keep_id, m)
        return f"{PREFIX}job:{self.job}:shuf:{shuffle_id}:{m}"

    def materialized(self, cache_id: str, scope: str, i: int) -> str:
        if scope == "context":
            return cache_key(self.client, cache_id, i)
        return f"{PREFIX}job:{self.job}:mat:{cache_id}:{i}"

    def result(self, p: int) -> str:
        return f"{PREFIX}job:{self.job}:res:{p}"


def cache_key(client: str, cache_id: str, i: int) -> str:
    return f"{PREFIX}cache:{client}:{cache_id}:{i}"


def kept_key(client: str, keep_id: str, m: int) -> str:
    return f"{PREFIX}kept:{client}:{keep_id}:{m}"


def named_key(label: str) -> str:
    return f"{PREFIX}named:{label}"


class BlockStore:
    """Batched reads and writes of encoded blocks. Redis errors become ``StoreUnavailableError``.

    >>> store = BlockStore("redis://127.0.0.1:6379/0")        # doctest: +SKIP
    >>> store.put_many([("okplan:x", b"...")], ttl=60)       # doctest: +SKIP
    """

    def __init__(self, url: str, connect_timeout: float = 2.0, timeout: float | None = 60.0,
                 tier: str | None = None):
        self.url = url
        tier = tier or os.environ.get("OKPLAN_STORE_SPILL_DIR")
        self.tier: SpillTier | None = SpillTier(tier) if tier else None
        self.chunk_bytes = chunk_bytes()
        self._getdel = True  # until a Redis older than 6.2 says it has no GETDEL
        try:
            # A few quick retries ride out a Redis restart; past them the caller gets a clear error.
            self.r = redis.Redis.from_url(
                url, socket_connect_timeout=connect_timeout, socket_timeout=timeout,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError], socket_keepalive=True)
        except ValueError as e:
            raise StoreUnavailableError(f"bad Redis URL {url!r}: {e}") from None

    def _fail(self, e: Exception) -> StoreUnavailableError:
        if isinstance(e, redis.OutOfMemoryError) or str(e).startswith("OOM"):
            # maxmemory with noeviction: Redis refuses writes rather than dropping blocks silently
            return self._full(e)
        return StoreUnavailableError(f"Redis at {redacted(self.url)} is unavailable: {e}")

    def _full(self, e: Exception) -> StoreFullError:
        return StoreFullError(f"the block store is full: Redis at {redacted(self.url)} reached its maxmemory "
                              f"({e}); set OKPLAN_STORE_SPILL_DIR to a directory all workers share so blocks "
                              f"overflow to disk, or raise Redis's maxmemory (OKPLAN_REDIS_MAXMEMORY for "
                              f"local-cluster)")

    def _overflow(self, e: Exception) -> SpillTier:
        """The tier for a write Redis refused as out of memory (``StoreFullError`` if there is none)."""
        if self.tier is None:
            raise self._full(e) from None
        return self.tier

    def reachable(self, timeout: float = 0.5) -> bool:
        """One quick ping without retries (to tell "Redis is down" from "a task had bad luck")."""
        probe = redis.Redis.from_url(self.url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                     retry=Retry(ExponentialBackoff(), 0))
        try:
            return bool(probe.ping())
        except redis.RedisError:
            return False
        finally:
            probe.close()

    def max_memory(self) -> int:
        """Redis's ``maxmemory`` in bytes; 0 when it has none or does not say (``INFO`` refused)."""
        try:
            return int(self.r.info("memory").get("maxmemory") or 0)
        except (redis.RedisError, ValueError):
            return 0

    def ping(self) -> None:
        try:
            self.r.ping()
        except redis.RedisError as e:
            raise self._fail(e) from None

    # -- plain blocks -----------------------------------------------------------------------------------
    def put_many(self, items: Iterable[tuple[str, bytes]], ttl: int | None) -> None:
        items = list(items)
        try:
            with self.r.pipeline(transaction=False) as p:
                for key, blob in items:
                    p.set(key, blob, ex=ttl)
                replies = p.execute(raise_on_error=False)
        except redis.RedisError as e:
            raise self._fail(e) from None
        for (key, blob), reply in zip(items, replies):
            if isinstance(reply, redis.OutOfMemoryError):
                self._overflow(reply).put(key, blob)
            elif isinstance(reply, Exception):
                raise self._fail(reply)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        try:
            blobs = self.r.mget(keys)
        except redis.RedisError as e:
            raise self._fail(e) from None
        if self.tier is not None and None in blobs:
            blobs = [b if b is not None else self.tier.get(k) for k, b in zip(keys, blobs)]
        return blobs

    def take(self, key: str) -> bytes | None:
        """Read and delete (a result is read once): one round trip (``GETDEL``, Redis 6.2), two on an
        older Redis."""
        try:
            if self._getdel:
                try:
                    blob = self.r.getdel(key)
                except redis.ResponseError as e:
                    if "unknown command" not in str(e).lower():
                        raise
                    self._getdel = False
            if not self._getdel:
                blob = self.r.get(key)
                if blob is not None:
                    self.r.unlink(key)
        except redis.ResponseError:  # a chunked block (a hash): chunk_info and get_field serve it
            return None
        except redis.RedisError as e:
            raise self._fail(e) from None
        if blob is None and self.tier is not None:
            blob = self.tier.get(key)
            self.tier.delete([key])
        return blob

    def exists_all(self, keys: Sequence[str]) -> bool:
        if not keys:
            return True
        try:
            if self.tier is None:
                return self.r.exists(*keys) == len(keys)
            with self.r.pipeline(transaction=False) as p:
                for key in keys:
                    p.exists(key)
                found = p.execute()
        except redis.RedisError as e:
            raise self._fail(e) from None
        return all(f or self.tier.has(k) for k, f in zip(keys, found))

    def expire(self, keys: Sequence[str], ttl: int) -> None:
        """Set the expiry of existing ``keys`` to ``ttl`` seconds (missing ones are skipped)."""
        try:
            with self.r.pipeline(transaction=False) as p:
                for key in keys:
                    p.expire(key, ttl)
                p.execute()
        except redis.RedisError as e:
            raise self._fail(e) from None

    def delete(self, keys: Sequence[str]) -> None:
        if not keys:  # a small job's (inline sources and results) ends without a look at the spill tier
            return
        try:
            for i in range(0, len(keys), _DELETE_CHUNK):
                self.r.unlink(*keys[i:i + _DELETE_CHUNK])
        except redis.RedisError as e:
            raise self._fail(e) from None
        if self.tier is not None:
            self.tier.delete(keys)

    # -- big blocks -------------------------------------------------------------------------------------
    def put_chunked(self, key: str, chunks: Iterator[bytes], count: int, ttl: int | None) -> None:
        """A block given as encoded chunks: a plain value if there is one chunk, else a hash of chunks
        written one round trip each, so a block of any size goes through."""
        first = next(chunks, None)
        second = next(chunks, None)
        if second is None:
            self.put_many([(key, first or b"")], ttl)
            return
        fields = {N_FIELD: 0, COUNT_FIELD: count}
        for i, blob in enumerate(_chain2(first, second, chunks)):
            self._hset(key, {str(i): blob}, unlink=i == 0)
            fields[N_FIELD] = i + 1
        self._hset(key, fields, ttl)

    def _hset(self, key: str, mapping: dict, ttl: int | None = None, unlink: bool = False) -> None:
        try:
            with self.r.pipeline(transaction=False) as p:
                if unlink:
                    p.unlink(key)
                p.hset(key, mapping=mapping)
                if ttl:
                    p.expire(key, ttl)
                p.execute()
        except redis.OutOfMemoryError as e:
            tier = self._overflow(e)
            if unlink:
                tier.delete([key])
            tier.put_fields(key, mapping)
        except redis.RedisError as e:
            raise self._fail(e) from None

    def chunk_info(self, key: str) -> tuple[int, int] | None:
        """``(chunks, records)`` of a chunked block at ``key``, None if there is none."""
        try:
            n, count = self.r.hmget(key, (N_FIELD, COUNT_FIELD))
        except redis.ResponseError:
            return None
        except redis.RedisError as e:
            raise self._fail(e) from None
        if n is None and self.tier is not None:
            n, count = self.tier.get_field(key, N_FIELD), self.tier.get_field(key, COUNT_FIELD)
        if n is None:
            return None
        return int(n), int(count or 0)

    def get_field(self, key: str, field: str) -> bytes | None:
        """One field of a hash (a chunk), from Redis or the spill tier."""
        try:
            blob = self.r.hget(key, field)
        except redis.RedisError as e:
            raise self._fail(e) from None
        if blob is None and self.tier is not None:
            blob = self.tier.get_field(key, field)
        return blob

    def delete_matching(self, pattern: str) -> int:
        """Delete keys matching a glob pattern (SCAN: for clean-up tools, not per job)."""
        n = 0
        try:
            batch = []
            for key in self.r.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= _DELETE_CHUNK:
                    n += self.r.unlink(*batch)
                    batch = []
            if batch:
                n += self.r.unlink(*batch)
        except redis.RedisError as e:
            raise self._fail(e) from None
        return n

    # -- shuffle buckets --------------------------------------------------------------------------------
    def put_buckets(self, key: str, buckets: dict[int, bytes], ttl: int | None,
                    big: Iterable[tuple[int, Iterator[bytes]]] = ()) -> None:
        """One map task's non-empty buckets, by reduce index, in one hash. ``big`` buckets come as
        chunks, written one round trip each before the mark that says the output is complete."""
        mapping: dict = {}
        mapping.update(buckets)
        fresh = True  # a re-run must not leave buckets of an earlier attempt behind
        for r, chunks in big:
            n = 0
            for n, blob in enumerate(chunks, 1):
                self._hset(key, {f"{r}:{n - 1}": blob}, unlink=fresh)
                fresh = False
            mapping[f"n:{r}"] = n
        mapping[MARK] = b"1"
        self._hset(key, mapping, ttl, unlink=fresh)

    def get_buckets(self, keys: Sequence[str], reduce_index: int) -> list[bytes | None | bool | int]:
        """Bucket ``reduce_index`` of every map task: bytes, None (empty bucket), False (the map
        task's output is missing) or an int: the number of chunks of a big bucket (``bucket_chunk``)."""
        nfield = f"n:{reduce_index}"
        try:
            with self.r.pipeline(transaction=False) as p:
                for key in keys:
                    p.hmget(key, (reduce_index, MARK, nfield))
                rows = p.execute()
        except redis.RedisError as e:
            raise self._fail(e) from None
        out: list = []
        for key, (blob, mark, n) in zip(keys, rows):
            if mark is None and self.tier is not None:
                blob, mark, n = (self.tier.get_field(key, f) for f in (str(reduce_index), MARK, nfield))
            out.append(False if mark is None else int(n) if n is not None else blob)
        return out

    def bucket_chunk(self, key: str, reduce_index: int, i: int) -> bytes | None:
        return self.get_field(key, f"{reduce_index}:{i}")

    # -- named datasets ---------------------------------------------------------------------------------
    def save_named(self, label: str, chunked: list[list[bytes]]) -> None:
        """Partition ``i`` of a named dataset is field ``i`` (one chunk), or fields ``i:0``, ``i:1``, ...
        and ``i:n`` (several: no Redis value may exceed its size limit)."""
        key = named_key(label)
        mapping: dict = {"n": len(chunked)}
        for i, chunks in enumerate(chunked):
            if len(chunks) == 1:
                mapping[str(i)] = chunks[0]
                continue
            mapping[f"{i}:n"] = len(chunks)
            mapping.update({f"{i}:{j}": b for j, b in enumerate(chunks)})
        try:
            with self.r.pipeline(transaction=True) as p:
                p.delete(key)
                p.hset(key, mapping=mapping)
                p.sadd(NAMED_SET, label)
                p.execute()
        except redis.RedisError as e:
            raise self._fail(e) from None

    def load_named(self, label: str) -> list[list[bytes]] | None:
        try:
            d = self.r.hgetall(named_key(label))
        except redis.RedisError as e:
            raise self._fail(e) from None
        if not d:
            return None
        n = int(d[b"n"])
        out = []
        for i in range(n):
            whole = d.get(str(i).encode())
            if whole is not None:
                out.append([whole])
            else:
                out.append([d[f"{i}:{j}".encode()] for j in range(int(d[f"{i}:n".encode()]))])
        return out

    def list_named(self) -> list[str]:
        try:
            return sorted(x.decode() for x in self.r.smembers(NAMED_SET))
        except redis.RedisError as e:
            raise self._fail(e) from None

    def drop_named(self, label: str) -> bool:
        try:
            with self.r.pipeline(transaction=True) as p:
                p.delete(named_key(label))
                p.srem(NAMED_SET, label)
                deleted, _ = p.execute()
        except redis.RedisError as e:
            raise self._fail(e) from None
        return bool(deleted)

    def close(self) -> None:
        try:
            self.r.close()
        except Exception:
            pass


def with_env_password(url: str) -> str:
    """``url`` with ``OKPLAN_REDIS_PASSWORD`` as its password when it names none (a password in the
    environment stays out of command lines, which ``ps`` shows).

    >>> with_env_password("redis://h:6379/0")                # doctest: +SKIP
    'redis://:pw@h:6379/0'
    """
    password = os.environ.get("OKPLAN_REDIS_PASSWORD")
    if not password or "@" in url or "://" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://:{quote(password, safe='')}@{rest}"


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def _chain2(a: bytes, b: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield a
    yield b
    yield from rest
