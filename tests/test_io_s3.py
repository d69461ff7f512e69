"""``s3://`` reading and writing against moto's standalone S3 server, started here on 127.0.0.1 with a
free port (never the internet). The endpoint and keys reach the workers inside the planned splits (the
file system travels with them), so the cluster reads its own splits from the same server."""

from __future__ import annotations

import gzip
import importlib.util
import subprocess
import sys

import pytest
from cluster_helpers import free_port, wait_until
from conftest import MASTERS

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("s3fs") is None or importlib.util.find_spec("moto") is None
    or importlib.util.find_spec("flask") is None,
    reason="needs s3fs and moto[server] (pip install -e '.[test]')")

BUCKET = "okplan-test"


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        import requests

        def up() -> bool:
            try:
                return requests.get(url, timeout=0.5).status_code < 500
            except requests.RequestException:
                return False

        assert wait_until(up, timeout=30), "moto server did not start"
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def s3(ctx, s3_endpoint, monkeypatch):
    """An s3fs file system on the moto server, configured the way users configure fsspec. Only the cluster
    runs these tests: it covers the client's side (listing, planning, commit) and the workers' reads."""
    if ctx.executor.name == "local" and len(MASTERS) > 1:
        pytest.skip("s3:// runs on the cluster executor, which covers the client's side too")
    import fsspec
    import fsspec.config

    options = {"key": "testing", "secret": "testing", "skip_instance_cache": True,
               "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}
    monkeypatch.setitem(fsspec.config.conf, "s3", options)
    fs = fsspec.filesystem("s3")
    if not fs.exists(BUCKET):
        import boto3

        boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
    yield fs
    for path in fs.ls(BUCKET, detail=False):
        fs.rm(path, recursive=True)


def test_s3_read_plain_gzip_glob_and_splits(ctx, s3):
    s3.pipe(f"{BUCKET}/in/a.log", b"GET /a 200\nGET /b 404\n")
    s3.pipe(f"{BUCKET}/in/b.log.gz", gzip.compress(b"GET /c 200\r\nGET /d 500"))
    s3.pipe(f"{BUCKET}/in/_SUCCESS", b"")
    ds = ctx.textFile(f"s3://{BUCKET}/in/*.log*")
    assert ds.collect() == ["GET /a 200", "GET /b 404", "GET /c 200", "GET /d 500"]
    assert ctx.textFile(f"s3://{BUCKET}/in").count() == 4
    assert f"s3://{BUCKET}/in/*.log*" in ds.toDebugString()
    # a bigger object is read in byte-range splits
    lines = [f"row {i}" for i in range(3000)]
    s3.pipe(f"{BUCKET}/big.txt", ("\n".join(lines) + "\n").encode())
    ds = ctx.textFile(f"s3://{BUCKET}/big.txt", 5)
    assert ds.getNumPartitions() >= 5
    assert ds.collect() == lines
    with pytest.raises(FileNotFoundError, match=f"s3://{BUCKET}/nope.txt"):
        ctx.textFile(f"s3://{BUCKET}/nope.txt")


def test_s3_save_round_trip(ctx, s3):
    out = f"s3://{BUCKET}/out"
    ctx.parallelize(range(6), 3).map(lambda x: x * x).saveAsTextFile(out, "gzip")
    names = sorted(p.rsplit("/", 1)[-1] for p in s3.find(f"{BUCKET}/out"))
    assert names == ["_SUCCESS", "part-00000.gz", "part-00001.gz", "part-00002.gz"]
    assert ctx.textFile(out).map(int).collect() == [0, 1, 4, 9, 16, 25]
    with pytest.raises(FileExistsError, match="already exists"):
        ctx.parallelize([1]).saveAsTextFile(out)
    ctx.parallelize([{"k": 1}], 1).saveAsJsonFile(out, overwrite=True)
    assert ctx.jsonFile(out).collect() == [{"k": 1}]

