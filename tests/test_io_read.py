"""Reading files: textFile, jsonFile, wholeTextFiles, pickleFile on every executor. No line is lost or
read twice whatever the split boundaries (Hadoop's LineRecordReader rule), paths are files, directories,
globs or comma lists, and the plan shows the source."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okplan import Context
from okplan.io.lines import decode_lines, read_line_chunks, split_lines
from okplan.io.listing import FileInfo, InputPathError, split_paths
from okplan.io.splits import plan_splits, split_size

#: every kind of line boundary: CRLF, lone CR, no trailing newline, empty lines, multi-byte UTF-8,
#: a form feed and U+2028 (kept inside lines, as Hadoop keeps them)
BOUNDARIES = {
    "lf": b"alpha\nbeta\ngamma\n",
    "no-trailing-newline": b"alpha\nbeta\ngamma",
    "crlf": b"alpha\r\nbeta\r\n\r\ngamma\r\n",
    "cr": b"alpha\rbeta\r\rgamma",
    "mixed": b"a\r\nb\rc\nd\n\r\n\n",
    "empty-lines": b"\n\n\nx\n\n",
    "only-newline": b"\n",
    "unicode": "héllo wörld\n日本語のテキスト\n🙂🙃\nend".encode(),
    "separators-kept": "form\x0cfeed\nline\u2028sep\n".encode(),
    "long-line": b"short\n" + b"x" * 5000 + b"\nafter\n",
}


def hadoop_lines(data: bytes) -> list[str]:
    return [line.decode("utf-8", "replace") for line in data.splitlines()]


def read_all_splits(data: bytes, size: int) -> list[bytes]:
    """Every line of ``data`` read through splits of ``size`` bytes, as the task runner reads them."""
    out: list[bytes] = []
    for start in range(0, max(len(data), 1), size):
        for chunk in read_line_chunks(io.BytesIO(data), start, min(start + size, len(data))):
            out.extend(split_lines(chunk))
    return out


# -- the line rule, exhaustively (no executor) ---------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BOUNDARIES))
def test_every_split_size_reads_every_line_once(name):
    data = BOUNDARIES[name]
    expected = data.splitlines()
    for size in range(1, len(data) + 1):
        assert read_all_splits(data, size) == expected, f"split size {size}"


def test_decode_keeps_hadoop_lines():
    for data in BOUNDARIES.values():
        assert [x for c in read_line_chunks(io.BytesIO(data)) for x in decode_lines(c)] == hadoop_lines(data)


def test_invalid_utf8_becomes_replacement_character():
    assert decode_lines(b"ok\n\xff\xfe\n") == ["ok", "\ufffd\ufffd"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list("ab é\n\r日")), max_size=120), parts=st.integers(1, 12))
def test_random_text_reads_back_exactly(tmp_path, text, parts):
    """Random text with every kind of terminator, split at random minPartitions, reads back exactly."""
    data = text.encode()
    path = tmp_path / "random.txt"
    path.write_bytes(data)
    with Context("local") as ctx:
        ds = ctx.textFile(str(path), minPartitions=parts)
        assert ds.collect() == hadoop_lines(data)
        if data:
            assert ds.getNumPartitions() >= min(parts, len(data))


# -- split planning --------------------------------------------------------------------------------------

def test_splits_follow_pyspark_goal_size_rule():
    f = FileInfo(None, "big.txt", 1000)
    assert split_size(1000, 4) == 250
    splits = plan_splits([f], 4)
    assert [(s.start, s.length) for s in splits] == [(0, 250), (250, 250), (500, 250), (750, 250)]
    # the last split may be up to 10% bigger instead of leaving a sliver
    assert [(s.start, s.length) for s in plan_splits([FileInfo(None, "a", 105)], 2)] == [(0, 52), (52, 53)]
    assert [s.length for s in plan_splits([FileInfo(None, "a", 98 * 2**20)], 1)] == [32 * 2**20] * 2 + [34 * 2**20]


def test_compressed_and_empty_files_are_one_split_each():
    files = [FileInfo(None, "a.gz", 10_000), FileInfo(None, "b.txt", 0), FileInfo(None, "c.bz2", 5)]
    splits = plan_splits(files, 8)
    assert [(s.path, s.start, s.length, s.compression) for s in splits] == [
        ("a.gz", 0, 10_000, "gzip"), ("b.txt", 0, 0, None), ("c.bz2", 0, 5, "bz2")]


def test_comma_lists_keep_braces_together():
    assert split_paths("a,b/{x,y}*.gz, c") == ["a", "b/{x,y}*.gz", "c"]


# -- textFile on every executor ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["crlf", "cr", "mixed", "no-trailing-newline", "unicode", "long-line"])
def test_line_boundaries_on_every_executor(ctx, tmp_path, name):
    data = BOUNDARIES[name]
    path = tmp_path / f"{name}.txt"
    path.write_bytes(data)
    for parts in (1, 3, 7):
        assert ctx.textFile(str(path), parts).collect() == hadoop_lines(data)


def test_empty_file_is_one_empty_partition(ctx, tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    ds = ctx.textFile(str(path))
    assert ds.getNumPartitions() == 1
    assert ds.collect() == []
    assert ds.count() == 0


def test_big_file_is_read_in_parallel_splits(ctx, tmp_path):
    lines = [f"line {i} " + "é" * (i % 7) + "x" * (i % 50) for i in range(20_000)]
    path = tmp_path / "big.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = ctx.textFile(str(path), minPartitions=8)
    assert ds.getNumPartitions() >= 8
    assert ds.collect() == lines
    sizes = ds.glom().map(len).collect()
    assert sum(sizes) == len(lines) and min(sizes) > 0
    assert ds.map(len).sum() == sum(map(len, lines))


def test_use_unicode_false_gives_bytes(ctx, tmp_path):
    path = tmp_path / "b.txt"
    path.write_bytes("é\r\nx".encode())
    assert ctx.textFile(str(path), use_unicode=False).collect() == ["é".encode(), b"x"]


def _make_logs(folder, n_files=4, per_file=50):
    """Plain and gzipped files alternating; returns every line in path order."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for i in range(n_files):
        lines = [f"f{i} r{j}" for j in range(per_file)]
        text = "\n".join(lines) + "\n"
        if i % 2:
            name = f"app-{i}.log.gz"
            (folder / name).write_bytes(gzip.compress(text.encode()))
        else:
            name = f"app-{i}.log"
            (folder / name).write_text(text)
        expected[name] = lines
    return [line for name in sorted(expected) for line in expected[name]]


def test_glob_mixing_plain_and_gzip(ctx, tmp_path):
    expected = _make_logs(tmp_path / "logs")
    (tmp_path / "logs" / "notes.md").write_text("not a log\n")
    ds = ctx.textFile(str(tmp_path / "logs" / "*.log*"))
    assert ds.collect() == expected
    assert ds.getNumPartitions() >= 4


def test_every_codec_by_extension(ctx, tmp_path):
    text = "a\nb\nc\n"
    (tmp_path / "x.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "y.bz2").write_bytes(bz2.compress(text.encode()))
    (tmp_path / "z.xz").write_bytes(lzma.compress(text.encode()))
    zstd = pytest.importorskip("zstandard")
    (tmp_path / "w.zst").write_bytes(zstd.ZstdCompressor().compress(text.encode()))
    ds = ctx.textFile(str(tmp_path), 10)
    assert ds.getNumPartitions() == 4
    assert ds.collect() == ["a", "b", "c"] * 4


def test_directory_skips_hidden_files_and_subdirectories(ctx, tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    (d / "a.txt").write_text("a1\na2\n")
    (d / "b.txt").write_text("b1\n")
    (d / "_SUCCESS").write_text("")
    (d / ".hidden").write_text("secret\n")
    (d / "sub").mkdir()
    (d / "sub" / "c.txt").write_text("c1\n")
    assert ctx.textFile(str(d)).collect() == ["a1", "a2", "b1"]
    assert ctx.textFile(str(d) + "/").collect() == ["a1", "a2", "b1"]


def test_comma_separated_paths_in_the_order_given(ctx, tmp_path):
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "b.txt").write_text("b\n")
    _make_logs(tmp_path / "logs", n_files=2, per_file=2)
    spec = f"{tmp_path / 'b.txt'},{tmp_path / 'a.txt'},{tmp_path / 'logs'}/*.gz"
    assert ctx.textFile(spec).collect() == ["b", "a", "f1 r0", "f1 r1"]


def test_many_small_files(ctx, tmp_path):
    for i in range(120):
        (tmp_path / f"s{i:03d}.txt").write_text(f"{i}\n{i}b\n")
    ds = ctx.textFile(str(tmp_path / "s*.txt"))
    assert ds.getNumPartitions() == 120
    assert ds.count() == 240
    assert ds.filter(lambda x: not x.endswith("b")).map(int).sum() == sum(range(120))


def test_relative_path_means_the_clients_directory(ctx, tmp_path, monkeypatch):
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "data.txt").write_text("x y\nz\n")
    monkeypatch.chdir(tmp_path)
    ds = ctx.textFile("rel/data.txt")
    monkeypatch.chdir("/")  # the client's directory when the dataset was made is what counts
    assert ds.flatMap(str.split).collect() == ["x", "y", "z"]


def test_missing_paths_name_the_path(ctx, tmp_path):
    with pytest.raises(InputPathError, match="Input path does not exist: file:.*nope.txt"):
        ctx.textFile(str(tmp_path / "nope.txt"))
    with pytest.raises(FileNotFoundError, match="matches 0 files"):
        ctx.textFile(str(tmp_path / "*.nothing"))
    with pytest.raises(TypeError, match="path string"):
        ctx.textFile(42)
    with pytest.raises(ValueError, match="minPartitions >= 1"):
        ctx.textFile(str(tmp_path), 0)


def test_a_file_removed_after_planning_names_the_file(ctx, tmp_path):
    path = tmp_path / "gone.txt"
    path.write_text("x\n")
    ds = ctx.textFile(str(path))
    path.unlink()
    with pytest.raises(FileNotFoundError) as info:
        ds.collect()
    assert "gone.txt" in str(info.value)
    assert any("visible at the same path" in n for n in getattr(info.value, "__notes__", []))


# -- other formats -------------------------------------------------------------------------------------

def test_json_lines(ctx, tmp_path):
    records = [{"status": 200, "path": "/é"}, [1, 2, None], "text", 3.5, None, True]
    text = "\n".join(json.dumps(r) for r in records[:3]) + "\n\n  \n" + "\n".join(json.dumps(r) for r in records[3:])
    (tmp_path / "e.jsonl").write_text(text)
    assert ctx.jsonFile(str(tmp_path / "e.jsonl"), 3).collect() == records


def test_json_error_names_the_file(ctx, tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops}\n')
    with pytest.raises(ValueError) as info:
        ctx.jsonFile(str(tmp_path / "bad.jsonl")).collect()
    assert any("bad.jsonl" in n for n in getattr(info.value, "__notes__", []))


def test_whole_text_files(ctx, tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress("zipped\r\n".encode()))
    (tmp_path / "c.txt").write_text("")
    ds = ctx.wholeTextFiles(str(tmp_path))
    assert ds.collect() == [(f"file:{tmp_path}/a.txt", "one\ntwo\n"), (f"file:{tmp_path}/b.txt.gz", "zipped\r\n"),
                            (f"file:{tmp_path}/c.txt", "")]
    assert 1 <= ds.getNumPartitions() <= 2
    assert ctx.wholeTextFiles(str(tmp_path / "*.txt"), 5).getNumPartitions() == 2


# -- plans -----------------------------------------------------------------------------------------------

def test_explain_shows_paths_files_and_splits(local_ctx, tmp_path):
    _make_logs(tmp_path / "logs", n_files=2, per_file=3)
    ds = local_ctx.textFile(str(tmp_path / "logs" / "*"), 2).map(str.upper)
    text = ds.toDebugString()
    assert f"TextFile [file:{tmp_path}/logs/*: 2 files, " in text
    assert "splits," in text
    assert "== Physical plan" in text and f"  └─ TextFile [file:{tmp_path}/logs/*" in text


def test_count_of_a_file_runs_the_job(local_ctx, tmp_path):
    (tmp_path / "a.txt").write_text("1\n2\n3\n")
    ds = local_ctx.textFile(str(tmp_path / "a.txt")).map(int)
    assert ds.count() == 3
    assert local_ctx.lastJobMetrics() is not None and local_ctx.lastJobMetrics().stages


def test_a_file_read_twice_in_one_job_is_not_kept(local_ctx, tmp_path):
    (tmp_path / "a.txt").write_text("a 1\nb 2\n")
    src = local_ctx.textFile(str(tmp_path / "a.txt"))
    pairs = src.map(str.split).map(tuple)
    joined = pairs.join(pairs)
    assert sorted(joined.collect()) == [("a", ("1", "1")), ("b", ("2", "2"))]
    assert "materialize_shared: #" + str(src.id()) not in joined.toDebugString()


def test_memory_filesystem_in_process(local_ctx):
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    fs.pipe("/okplan-test/in.txt", b"m1\nm2\n")
    try:
        assert local_ctx.textFile("memory://okplan-test/in.txt").collect() == ["m1", "m2"]
    finally:
        fs.rm("/okplan-test", recursive=True)


def test_the_client_plans_splits_but_uploads_no_data(local_ctx, tmp_path):
    from okplan.exec.cluster.spec import build_spec, sources_to_upload

    (tmp_path / "a.txt").write_text("x\n" * 1000)
    ds = local_ctx.textFile(str(tmp_path / "a.txt"), 4).map(str.upper)
    physical = local_ctx._plan(ds._node)[3]
    assert sources_to_upload(physical) == {}
    assert build_spec("j", "c", physical, [0, 1, 2, 3])["sources"] == {}


def test_two_reads_of_the_same_files_are_computed_once(local_ctx, tmp_path):
    (tmp_path / "a.txt").write_text("k 1\n")
    a = local_ctx.textFile(str(tmp_path / "a.txt"))
    b = local_ctx.textFile(str(tmp_path / "a.txt"))
    assert a.union(b).collect() == ["k 1", "k 1"]
    assert "merge_identical_subplans" in a.union(b).toDebugString()


def test_a_missing_backend_names_the_package(local_ctx):
    import importlib.util

    from okplan.io.filesystems import MissingBackendError

    if importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed")
    with pytest.raises(MissingBackendError, match="pip install 'gcsfs'"):
        local_ctx.textFile("gs://bucket/logs/*.gz")


def test_a_missing_codec_names_the_extra(local_ctx, tmp_path, monkeypatch):
    import fsspec.compression

    from okplan.io.filesystems import MissingBackendError

    (tmp_path / "a.zst").write_bytes(b"\x28\xb5\x2f\xfd")
    monkeypatch.delitem(fsspec.compression.compr, "zstd", raising=False)
    with pytest.raises(MissingBackendError, match=r"okplan\[zstd\]"):
        local_ctx.textFile(str(tmp_path / "a.zst"))
    with pytest.raises(MissingBackendError, match=r"okplan\[zstd\]"):
        local_ctx.parallelize([1]).saveAsTextFile(str(tmp_path / "out"), "zstd")


@pytest.mark.parametrize("module", ["codecs", "filesystems", "lines", "listing", "sinks", "splits"])
def test_io_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"okplan.io.{module}"))
    assert result.failed == 0
