"""What lives in Redis, on a real cluster: blocks carry a MAC and a tampered or foreign one is refused
without being unpickled; Redis has a password nobody sees in ``ps``; a dead client's job is cancelled
and its keys deleted; a half-failed upload leaves nothing; a cache lost mid-job is recomputed."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from operator import add

import psutil
import pytest
import redis
from cluster_helpers import cluster_context, job_keys, wait_until

from okplan import BlockIntegrityError, JobFailedError
from okplan.exec.cluster.store import StoreUnavailableError
from okplan.exec.serialization import TAG_SIZE, block_key, decode_block, encode_block, serialize


class _WritesAFile:
    """A pickle payload that would create a file when unpickled (what an attacker would plant)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _job_keys(ctx) -> list[str]:
    return [k for k in job_keys(ctx) if k.startswith("okplan:job:")]


def _hostile_blocks(path: str) -> list[bytes]:
    payload = pickle.dumps(_WritesAFile(path), 5)
    return [
        b"\x00" + payload,                                           # a pre-MAC block
        bytes(TAG_SIZE) + b"\x00" + payload,                         # a made-up tag
        encode_block(_WritesAFile(path), block_key(b"another cluster")),   # signed with another secret
    ]


@pytest.fixture(scope="module")
def ctx():
    """One cluster for this module's tests (a client silent for 2 s loses its jobs)."""
    with cluster_context(2, client_timeout=2.0) as ctx:
        yield ctx


def test_blocks_carry_a_mac_under_the_secret_and_refuse_any_change():
    key = block_key(b"s3cret")
    blob = encode_block([("a", 1)] * 100, key)
    assert decode_block(blob, key) == [("a", 1)] * 100
    for bad in (blob[:-1] + bytes([blob[-1] ^ 1]), blob[:TAG_SIZE], blob[:5], b""):
        with pytest.raises(BlockIntegrityError, match="integrity"):
            decode_block(bad, key)
    with pytest.raises(BlockIntegrityError, match="OKPLAN_SECRET"):
        decode_block(blob, block_key(b"other"))


def test_no_tampered_or_foreign_block_is_unpickled_nor_fails_anything_but_its_job(ctx, tmp_path):
    marker = tmp_path / "pwned"
    store = ctx.executor.store
    cached = ctx.parallelize(range(100), 4).map(lambda x: x + 1).cache()
    assert cached.sum() == 5050
    ctx.dataSet(list(range(10)), label="victim", bufferSize=5)
    cache_keys = [k for k in job_keys(ctx) if f":cache-{cached._node.nid}:" in k]
    assert len(cache_keys) == 4
    for hostile in _hostile_blocks(str(marker)):
        store.r.set(cache_keys[0], hostile)
        with pytest.raises(BlockIntegrityError, match="integrity check.*not unpickled"):
            cached.sum()
        store.r.hset("okplan:named:victim", "1", hostile)
        with pytest.raises(BlockIntegrityError, match="named dataset 'victim'"):
            ctx.dataSet(label="victim", fromExisting=True)
    assert not marker.exists()
    # the cluster is whole and the Context usable
    assert ctx.parallelize(range(10), 2).map(lambda x: (x % 2, x)).reduceByKey(add).collectAsMap() == {0: 20, 1: 25}
    assert len(ctx.executor.worker_pids()) == 2
    cached.unpersist()


def test_local_cluster_redis_has_a_password_no_process_shows(ctx):
    cluster = ctx.executor
    url = cluster.redis_url
    password = url.split("://:", 1)[1].split("@", 1)[0]
    assert len(password) >= 20
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, socket_timeout=2).ping()
    procs = [cluster.redis_pid, cluster.master_pid, *cluster.worker_pids()]
    for pid in procs:
        assert password not in " ".join(psutil.Process(pid).cmdline())
    assert password not in repr(cluster)
    assert ctx.parallelize(range(10), 2).sum() == 45


def test_a_source_upload_that_fails_half_way_leaves_no_keys(ctx):
    r = ctx.executor.store.r
    used = r.info("memory")["used_memory"]
    r.config_set("maxmemory", used + 2_000_000)
    tier, ctx.executor.store.tier = ctx.executor.store.tier, None  # no spill tier: the upload fails
    try:
        blocks = [os.urandom(400_000) for _ in range(12)]  # incompressible: about 4.8 MB to upload
        with pytest.raises(StoreUnavailableError, match="full|maxmemory|OOM"):
            ctx.parallelize(blocks, 12).map(len).sum()
        assert _job_keys(ctx) == []
    finally:
        ctx.executor.store.tier = tier
        r.config_set("maxmemory", 0)
    assert ctx.parallelize(range(10), 2).sum() == 45


def test_a_cache_lost_mid_job_is_recomputed_from_lineage(ctx):
    calls = ctx.accumulator(0)

    def counted(x):
        calls.add(1)
        return x * 2

    cached = ctx.parallelize(range(200), 4).map(counted).cache()
    assert cached.count() == 200 and calls.value == 200

    def slow(i, it):
        time.sleep(0.8)
        return it

    store = ctx.executor.store

    def lose_the_cache():
        store.delete([k for k in job_keys(ctx) if f":cache-{cached._node.nid}:" in k])

    slow_sum = ctx.parallelize(range(4), 2).mapPartitionsWithIndex(slow).map(lambda x: (x, x)).reduceByKey(add)
    threading.Timer(0.3, lose_the_cache).start()
    # the result stage reads the cache only after the slow shuffle stage, by which time it is gone
    assert slow_sum.union(cached.map(lambda x: (x, 1))).count() == 204
    assert calls.value == 400  # computed again, once
    assert cached.sum() == 39800 and calls.value == 400  # and cached again


_CLIENT = textwrap.dedent("""
    import os, sys, time
    from okplan import Context
    ctx = Context(sys.argv[1], redis=sys.argv[2])
    marker = sys.argv[3]
    def slow(x):
        with open(marker, "a") as f:
            f.write("x\\n")
        time.sleep(0.2)
        return x
    # over 64 KiB of sources, so that they go to Redis (smaller ones travel in the job's spec)
    ctx.parallelize([os.urandom(4096) for _ in range(60)], 60).map(slow).collect()
""")


def test_the_master_cancels_the_job_of_a_killed_client_and_deletes_its_keys(ctx, tmp_path):
    marker = tmp_path / "tasks"
    marker.touch()
    cluster = ctx.executor
    env = dict(os.environ)
    if cluster.secret:
        env["OKPLAN_SECRET"] = cluster.secret.decode()
    client = subprocess.Popen([sys.executable, "-c", _CLIENT, cluster.master_url, cluster.redis_url,
                               str(marker)], env=env)
    try:
        assert wait_until(lambda: len(marker.read_text().split()) >= 2, 30)
        assert _job_keys(ctx)
        os.kill(client.pid, signal.SIGKILL)
        client.wait()
        killed = time.monotonic()
        assert wait_until(lambda: _job_keys(ctx) == [], 10), _job_keys(ctx)
        gone_after = time.monotonic() - killed
        ran = len(marker.read_text().split())
        time.sleep(1.0)
        assert len(marker.read_text().split()) == ran < 40  # no task started since
        assert gone_after < 8
    finally:
        if client.poll() is None:
            client.kill()
    assert ctx.parallelize(range(10), 2).sum() == 45


def test_cache_keys_live_while_their_client_does(ctx):
    from okplan import Context

    cluster = ctx.executor
    other = Context(cluster.master_url, redis=cluster.redis_url, secret=cluster.secret, cache_ttl=2)
    try:
        cached = other.parallelize(range(10), 2).cache()
        assert cached.count() == 10
        keys = [k for k in job_keys(ctx) if k.startswith(f"okplan:cache:{other.executor.client_id}:")]
        assert len(keys) == 2
        time.sleep(3)  # past the TTL: the client refreshed them (every second here)
        assert all(0 < cluster.store.r.ttl(k) <= 2 for k in keys)
        assert cached.sum() == 45
    finally:
        other.stop()
    assert not [k for k in job_keys(ctx) if other.executor.client_id in k]


def test_a_side_file_manifest_written_without_the_secret_is_refused(ctx, tmp_path):
    from okplan.exec.cluster import sidefiles

    store = ctx.executor.store
    manifest = {"evil.py": {"sha": "0" * 64, "py": True}}
    sidefiles.publish(store, "intruder", manifest, "evil.py", b"import os", 60, block_key(b"not the secret"))
    with pytest.raises(BlockIntegrityError, match="side-file manifest"):
        sidefiles.install(store, "intruder", ctx.executor.block_key)
    assert sidefiles.alive_keys(store, "nobody", ctx.executor.block_key) == []


def test_a_redis_password_from_the_environment_joins_urls_that_have_none(monkeypatch):
    from okplan.exec.cluster.store import redacted, with_env_password

    monkeypatch.setenv("OKPLAN_REDIS_PASSWORD", "p@ss word")
    assert with_env_password("redis://h:6379/0") == "redis://:p%40ss%20word@h:6379/0"
    assert with_env_password("redis://:own@h:6379/0") == "redis://:own@h:6379/0"
    assert redacted(with_env_password("redis://h:6379/0")) == "redis://***@h:6379/0"



def test_a_result_is_taken_in_one_round_trip_and_a_chunked_one_left_to_its_reader(ctx, monkeypatch):
    store = ctx.executor.store
    store.put_many([("okplan:test:take", b"value")], 60)
    assert store.take("okplan:test:take") == b"value" and store.take("okplan:test:take") is None
    store.r.hset("okplan:test:chunked", mapping={"0": b"chunk", "n": 1})
    try:
        assert store.take("okplan:test:chunked") is None and store.r.exists("okplan:test:chunked")
    finally:
        store.delete(["okplan:test:chunked"])

    def unknown(key):
        raise redis.ResponseError("unknown command 'GETDEL'")

    monkeypatch.setattr(store.r, "getdel", unknown)   # a Redis older than 6.2: GET, then UNLINK
    monkeypatch.setattr(store, "_getdel", True)
    store.put_many([("okplan:test:take", b"again")], 60)
    assert store.take("okplan:test:take") == b"again" and not store.r.exists("okplan:test:take")
