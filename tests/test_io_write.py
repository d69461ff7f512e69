"""Writing files: saveAsTextFile, saveAsJsonFile, saveAsPickleFile on every executor, through the commit
protocol: one part file per partition, renamed into place only when every task succeeded, then
``_SUCCESS``; a failed save leaves nothing; an existing output is refused unless ``overwrite=True``."""

from __future__ import annotations

import bz2
import gzip
import os

import pytest

from okplan import ConfigurationError
from okplan.io.commit import FileAlreadyExistsError, FileCommitter
from okplan.io.filesystems import filesystem
from okplan.io.sinks import PartWriter


def listing(path) -> list[str]:
    return sorted(os.listdir(path))


def test_text_round_trip_one_part_per_partition(ctx, tmp_path):
    out = tmp_path / "out"
    records = ["a", "é", "", None, 3, ("k", 1), b"raw", "two\nlines"]
    ctx.parallelize(records, 3).saveAsTextFile(str(out))
    assert listing(out) == ["_SUCCESS", "part-00000", "part-00001", "part-00002"]
    assert (out / "_SUCCESS").read_bytes() == b""
    text = b"".join((out / f"part-0000{i}").read_bytes() for i in range(3))
    assert text == "a\né\n\nNone\n3\n('k', 1)\nraw\ntwo\nlines\n".encode()
    assert ctx.textFile(str(out)).collect() == ["a", "é", "", "None", "3", "('k', 1)", "raw", "two", "lines"]


def test_empty_partitions_still_get_their_part_file(ctx, tmp_path):
    out = tmp_path / "out"
    ctx.parallelize([1], 3).saveAsTextFile(str(out))
    assert listing(out) == ["_SUCCESS", "part-00000", "part-00001", "part-00002"]
    assert [(out / f"part-0000{i}").read_text() for i in range(3)] == ["", "", "1\n"]


@pytest.mark.parametrize("codec, ext, decompress", [
    ("gzip", ".gz", gzip.decompress),
    ("org.apache.hadoop.io.compress.GzipCodec", ".gz", gzip.decompress),
    ("org.apache.hadoop.io.compress.BZip2Codec", ".bz2", bz2.decompress),
    ("bz2", ".bz2", bz2.decompress),
])
def test_compressed_parts_are_named_as_hadoop_names_them(ctx, tmp_path, codec, ext, decompress):
    out = tmp_path / "out"
    ctx.parallelize(range(10), 2).saveAsTextFile(str(out), compressionCodecClass=codec)
    assert listing(out) == ["_SUCCESS", f"part-00000{ext}", f"part-00001{ext}"]
    assert decompress((out / f"part-00000{ext}").read_bytes()) == b"0\n1\n2\n3\n4\n"
    assert ctx.textFile(str(out)).map(int).collect() == list(range(10))


def test_zstd_and_xz(local_ctx, tmp_path):
    pytest.importorskip("zstandard")
    for codec, ext in (("zstd", ".zst"), ("xz", ".xz"), ("org.apache.hadoop.io.compress.ZStandardCodec", ".zst")):
        out = tmp_path / codec
        local_ctx.parallelize(["x", "y"], 1).saveAsTextFile(str(out), codec)
        assert listing(out) == ["_SUCCESS", f"part-00000{ext}"]
        assert local_ctx.textFile(str(out)).collect() == ["x", "y"]


def test_unknown_codec_says_what_works(local_ctx, tmp_path):
    with pytest.raises(ConfigurationError, match="use gzip, bz2"):
        local_ctx.parallelize([1]).saveAsTextFile(str(tmp_path / "o"), "org.apache.hadoop.io.compress.LzoCodec")
    assert not (tmp_path / "o").exists()


def test_json_round_trip(ctx, tmp_path):
    out = tmp_path / "j"
    records = [{"a": 1, "b": [None, True]}, "é", 2.5, None, [1, {"x": "y"}]]
    ctx.parallelize(records, 2).saveAsJsonFile(str(out))
    assert (out / "part-00000").read_text(encoding="utf-8") == '{"a": 1, "b": [null, true]}\n"é"\n'
    assert ctx.jsonFile(str(out)).collect() == records


def test_json_of_a_non_json_record_says_what_to_do(local_ctx, tmp_path):
    with pytest.raises(TypeError) as info:
        local_ctx.parallelize([{1, 2}]).saveAsJsonFile(str(tmp_path / "j"))
    assert any("json.dumps" in n for n in info.value.__notes__)
    assert not (tmp_path / "j").exists()


@pytest.mark.parametrize("batch", [1, 10, 0])
def test_pickle_round_trip_keeps_partitions(ctx, tmp_path, batch):
    out = tmp_path / f"p{batch}"
    data = [(i, {"v": [i] * (i % 3)}, None) for i in range(57)]
    ctx.parallelize(data, 4).saveAsPickleFile(str(out), batchSize=batch)
    back = ctx.pickleFile(str(out))
    assert back.getNumPartitions() == 4
    assert back.collect() == data
    assert back.glom().collect() == ctx.parallelize(data, 4).glom().collect()


def test_existing_output_is_refused_unless_overwrite(ctx, tmp_path):
    out = tmp_path / "out"
    ctx.parallelize(["old"], 1).saveAsTextFile(str(out))
    with pytest.raises(FileAlreadyExistsError, match=f"Output directory file:{out} already exists.*overwrite=True"):
        ctx.parallelize(["new"], 2).saveAsTextFile(str(out))
    assert ctx.textFile(str(out)).collect() == ["old"]
    ctx.parallelize(["new", "er"], 2).saveAsTextFile(str(out), overwrite=True)
    assert listing(out) == ["_SUCCESS", "part-00000", "part-00001"]
    assert ctx.textFile(str(out)).collect() == ["new", "er"]
    assert isinstance(FileAlreadyExistsError("x"), FileExistsError)


def boom_on_partition_two(x):
    if x == 7:
        raise RuntimeError("bad record 7")
    return x


def test_a_failing_save_leaves_nothing(ctx, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="bad record 7"):
        ctx.parallelize(range(10), 4).map(boom_on_partition_two).saveAsTextFile(str(out))
    assert not out.exists()  # no part files, no _SUCCESS, no _temporary: the directory it made is gone
    # and the same save works once the data is fixed
    ctx.parallelize(range(10), 4).saveAsTextFile(str(out))
    assert len(listing(out)) == 5


def test_a_failing_overwrite_leaves_no_parts(local_ctx, tmp_path):
    out = tmp_path / "out"
    local_ctx.parallelize([1], 1).saveAsTextFile(str(out))
    with pytest.raises(RuntimeError):
        local_ctx.parallelize(range(10), 4).map(boom_on_partition_two).saveAsTextFile(str(out), overwrite=True)
    assert not out.exists() or not [n for n in listing(out) if n.startswith(("part-", "_"))]


def test_a_duplicated_attempt_never_leaves_two_copies(tmp_path):
    """Two attempts of one task (a retry after a lost worker, or a duplicate) both write; the commit
    keeps the reported one and drops the other with _temporary."""
    committer = FileCommitter(str(tmp_path / "out"))
    committer.setup()
    writer = PartWriter(committer.fs, committer.temp_dir, "text")
    first = list(writer(0, iter(["from attempt 1"])))
    second = list(writer(0, iter(["from attempt 2"])))
    other = list(writer(1, iter(["p1"])))
    assert first[0][1] != second[0][1]
    committer.commit(second + other)
    out = tmp_path / "out"
    assert listing(out) == ["_SUCCESS", "part-00000", "part-00001"]
    assert (out / "part-00000").read_text() == "from attempt 2\n"


def test_save_on_emptyRDD_writes_success_only(ctx, tmp_path):
    out = tmp_path / "out"
    ctx.emptyRDD().saveAsTextFile(str(out))
    assert listing(out) == ["_SUCCESS"]
    assert ctx.textFile(str(out)).collect() == []


def test_relative_output_is_the_clients_directory(ctx, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ctx.parallelize(["r1", "r2"], 2).saveAsTextFile("relative-out")
    assert listing(tmp_path / "relative-out") == ["_SUCCESS", "part-00000", "part-00001"]
    assert ctx.textFile("relative-out").collect() == ["r1", "r2"]


def test_bad_arguments(local_ctx, tmp_path):
    with pytest.raises(TypeError, match="path string"):
        local_ctx.parallelize([1]).saveAsTextFile(None)
    with pytest.raises(ValueError, match="batchSize >= 0"):
        local_ctx.parallelize([1]).saveAsPickleFile(str(tmp_path / "p"), batchSize=-1)
    with pytest.raises(TypeError, match="compressionCodecClass"):
        local_ctx.parallelize([1]).saveAsTextFile(str(tmp_path / "q"), compressionCodecClass=3)


def test_memory_filesystem_round_trip_in_process(local_ctx):
    fs, _ = filesystem("memory://okplan-save")
    try:
        local_ctx.parallelize(["m1", "m2"], 2).saveAsTextFile("memory://okplan-save/out")
        assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls("/okplan-save/out", detail=False)) == [
            "_SUCCESS", "part-00000", "part-00001"]
        assert local_ctx.textFile("memory://okplan-save/out").collect() == ["m1", "m2"]
    finally:
        fs.rm("/okplan-save", recursive=True)


def test_memory_filesystem_is_refused_on_a_cluster(ctx):
    if ctx.executor.name == "local":
        pytest.skip("memory:// works in process")
    with pytest.raises(ConfigurationError, match="memory:// exists only in this process"):
        ctx.parallelize([1]).saveAsTextFile("memory://x/out")
    with pytest.raises(ConfigurationError, match="shared file system or an object store"):
        ctx.textFile("memory://x/in.txt")


def test_explain_of_a_save_names_the_output(local_ctx, tmp_path):
    ds = local_ctx.parallelize([1, 2], 2).map(str)
    ds.saveAsTextFile(str(tmp_path / "o"))
    assert local_ctx.lastJobMetrics().stages


def test_a_task_whose_process_dies_mid_save_is_retried_without_a_second_copy(ctx, tmp_path):
    """On a cluster, a task process killed while its attempt file is open is retried; the retry writes
    a new attempt, the commit keeps the reported one and the dead attempt goes with _temporary."""
    if ctx.executor.name == "local":
        pytest.skip("a task process can only die on a cluster")
    marker, out = tmp_path / "killed", tmp_path / "out"

    def die_once(x):
        if x == 7 and not marker.exists():
            marker.touch()
            os._exit(3)
        return x

    ctx.parallelize(range(20), 4).map(die_once).saveAsTextFile(str(out))
    assert marker.exists() and ctx.lastJobMetrics().retries == 1
    assert listing(out) == ["_SUCCESS", "part-00000", "part-00001", "part-00002", "part-00003"]
    assert ctx.textFile(str(out)).map(int).collect() == list(range(20))
