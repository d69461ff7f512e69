"""The Redis block store: where partitions, shuffle buckets, caches, results and named datasets live.

Keys (all under ``okplan:``; a job's keys expire, so a crashed client leaks nothing for long)::

    okplan:job:{job}:src:{source}:{i}     a source partition the client uploaded
    okplan:job:{job}:shuf:{shuffle}:{m}   hash: bucket per reduce index of map task m, plus field "m"
    okplan:job:{job}:mat:{cache}:{i}      a subplan shared within the job
    okplan:job:{job}:res:{p}              a result too large for a message
    okplan:cache:{client}:{cache}:{i}     a cache() partition, until unpersist()/stop()
    okplan:named:{label}                  hash: "n" and one field per partition of a named dataset
    okplan:named                          set of the labels of named datasets

Every method does one round trip (pipelines, HMGET, EXISTS of many keys) whatever the number of blocks.

>>> Keys("j1").shuffle(0, 3)
'okplan:job:j1:shuf:0:3'
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence
from urllib.parse import quote

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ...errors import ClusterUnavailableError, OkplanError

PREFIX = "okplan:"
NAMED_SET = PREFIX + "named"
#: field of a shuffle hash that says "this map task's output exists" (its buckets may all be empty)
MARK = b"m"
_DELETE_CHUNK = 1000


class StoreUnavailableError(ClusterUnavailableError):
    """Redis could not be reached or failed while reading or writing blocks."""


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
    """Key names of one job (and of one client's caches)."""

    __slots__ = ("job", "client")

    def __init__(self, job: str, client: str = ""):
        self.job = job
        self.client = client

    def source(self, source_id: str, i: int) -> str:
        return f"{PREFIX}job:{self.job}:src:{source_id}:{i}"

    def shuffle(self, shuffle_id: int, m: int) -> str:
        return f"{PREFIX}job:{self.job}:shuf:{shuffle_id}:{m}"

    def materialized(self, cache_id: str, scope: str, i: int) -> str:
        if scope == "context":
            return cache_key(self.client, cache_id, i)
        return f"{PREFIX}job:{self.job}:mat:{cache_id}:{i}"

    def result(self, p: int) -> str:
        return f"{PREFIX}job:{self.job}:res:{p}"


def cache_key(client: str, cache_id: str, i: int) -> str:
    return f"{PREFIX}cache:{client}:{cache_id}:{i}"


def named_key(label: str) -> str:
    return f"{PREFIX}named:{label}"


class BlockStore:
    """Batched reads and writes of encoded blocks. Redis errors become ``StoreUnavailableError``.

    >>> store = BlockStore("redis://127.0.0.1:6379/0")        # doctest: +SKIP
    >>> store.put_many([("okplan:x", b"...")], ttl=60)       # doctest: +SKIP
    """

    def __init__(self, url: str, connect_timeout: float = 2.0, timeout: float | None = 60.0):
        self.url = url
        try:
            # A few quick retries ride out a Redis restart; past them the caller gets a clear error.
            self.r = redis.Redis.from_url(
                url, socket_connect_timeout=connect_timeout, socket_timeout=timeout,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError], socket_keepalive=True)
        except ValueError as e:
            raise StoreUnavailableError(f"bad Redis URL {url!r}: {e}") from None

    def _fail(self, e: Exception) -> StoreUnavailableError:
        if str(e).startswith("OOM"):
            # maxmemory with noeviction: Redis refuses writes rather than dropping blocks silently
            return StoreUnavailableError(f"Redis at {redacted(self.url)} is full (maxmemory reached; it evicts "
                                         f"nothing): {e}. Give it more memory or drop cached and named data")
        return StoreUnavailableError(f"Redis at {redacted(self.url)} is unavailable: {e}")

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

    def ping(self) -> None:
        try:
            self.r.ping()
        except redis.RedisError as e:
            raise self._fail(e) from None

    # -- plain blocks -----------------------------------------------------------------------------------
    def put_many(self, items: Iterable[tuple[str, bytes]], ttl: int | None) -> None:
        try:
            with self.r.pipeline(transaction=False) as p:
                for key, blob in items:
                    p.set(key, blob, ex=ttl)
                p.execute()
        except redis.RedisError as e:
            raise self._fail(e) from None

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        try:
            return self.r.mget(keys)
        except redis.RedisError as e:
            raise self._fail(e) from None

    def take(self, key: str) -> bytes | None:
        """Read and delete (a result is read once)."""
        try:
            with self.r.pipeline(transaction=False) as p:
                p.get(key)
                p.unlink(key)
                return p.execute()[0]
        except redis.RedisError as e:
            raise self._fail(e) from None

    def exists_all(self, keys: Sequence[str]) -> bool:
        if not keys:
            return True
        try:
            return self.r.exists(*keys) == len(keys)
        except redis.RedisError as e:
            raise self._fail(e) from None

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
        try:
            for i in range(0, len(keys), _DELETE_CHUNK):
                self.r.unlink(*keys[i:i + _DELETE_CHUNK])
        except redis.RedisError as e:
            raise self._fail(e) from None

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
    def put_buckets(self, key: str, buckets: dict[int, bytes], ttl: int | None) -> None:
        """One map task's non-empty buckets, by reduce index, in one hash."""
        mapping: dict = {MARK: b"1"}
        mapping.update(buckets)
        try:
            with self.r.pipeline(transaction=False) as p:
                p.unlink(key)  # a re-run must not leave buckets of an earlier attempt behind
                p.hset(key, mapping=mapping)
                if ttl:
                    p.expire(key, ttl)
                p.execute()
        except redis.RedisError as e:
            raise self._fail(e) from None

    def get_buckets(self, keys: Sequence[str], reduce_index: int) -> list[bytes | None | bool]:
        """Bucket ``reduce_index`` of every map task: bytes, None (empty bucket) or False (the map
        task's output is missing)."""
        try:
            with self.r.pipeline(transaction=False) as p:
                for key in keys:
                    p.hmget(key, (reduce_index, MARK))
                rows = p.execute()
        except redis.RedisError as e:
            raise self._fail(e) from None
        return [blob if mark is not None else False for blob, mark in rows]

    # -- named datasets ---------------------------------------------------------------------------------
    def save_named(self, label: str, blobs: list[bytes]) -> None:
        key = named_key(label)
        mapping: dict = {"n": len(blobs)}
        mapping.update({str(i): b for i, b in enumerate(blobs)})
        try:
            with self.r.pipeline(transaction=True) as p:
                p.delete(key)
                p.hset(key, mapping=mapping)
                p.sadd(NAMED_SET, label)
                p.execute()
        except redis.RedisError as e:
            raise self._fail(e) from None

    def load_named(self, label: str) -> list[bytes] | None:
        try:
            d = self.r.hgetall(named_key(label))
        except redis.RedisError as e:
            raise self._fail(e) from None
        if not d:
            return None
        n = int(d[b"n"])
        return [d[str(i).encode()] for i in range(n)]

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
