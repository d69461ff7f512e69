"""explain(): the three plans, the rules that fired, stages, shuffles, fused operators."""

from __future__ import annotations

import re
from operator import add

import pytest


def normalised(text: str) -> str:
    """Plan text without what changes from run to run: node ids and call sites."""
    text = re.sub(r"#\d+", "#N", text)
    text = re.sub(r"@ \S+:\d+", "@ site", text)
    return re.sub(r"at \S+\.py:\d+", "at site", text)


def wordcount(ctx):
    return (ctx.dataSet(["a b a", "b c"] * 10, label="lines", bufferSize=5)
            .flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(add))


GOLDEN = """\
== Logical plan ==
#N Shuffle [reduceByKey, hash(4), add]  (4 parts)  @ site
└─ #N Map [<lambda> at site]  (4 parts)  @ site
   └─ #N FlatMap [str.split]  (4 parts)  @ site
      └─ #N Parallelize [20 records] "lines"  (4 parts)  @ site

== Optimized plan ==
rules fired:
  lift_combiners: #N Shuffle: partial add in the map stage before reduceByKey
#N Shuffle [reduceByKey, hash(4), merge add]  (4 parts)  @ site
└─ #N PartialAggregate [add]  (4 parts)  @ site
   └─ #N Map [<lambda> at site]  (4 parts)  @ site
      └─ #N FlatMap [str.split]  (4 parts)  @ site
         └─ #N Parallelize [20 records] "lines"  (4 parts)  @ site

== Physical plan (local) ==
runs in-process: small job (20 records < 50,000)
2 stages, 8 tasks, 1 shuffle
Stage 1  result  (4 tasks)  <- reads stage 0
  ShuffleRead [shuffle 0, merge add]
Stage 0  shuffle map -> writes shuffle 0, hash(4)  (4 tasks)  datasets: lines
  PartialAggregate [add]
  └─ Fused: FlatMap(str.split) -> Map(<lambda> at site)
     └─ Parallelize "lines" [4 partitions, 20 records]"""


def test_wordcount_plan_text(local_ctx):
    assert normalised(wordcount(local_ctx).toDebugString()) == GOLDEN


def test_explain_prints_the_plan(local_ctx, capsys):
    wordcount(local_ctx).explain()
    out = capsys.readouterr().out
    assert out.startswith("== Logical plan ==") and "== Physical plan" in out


def test_explain_returns_text_not_bytes(ctx):
    text = ctx.parallelize([1, 2]).map(str).toDebugString()
    assert isinstance(text, str) and "Map" in text


def test_compact_mode_is_one_line_per_stage(local_ctx):
    lines = wordcount(local_ctx).toDebugString("compact").splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("stage 0 [4 tasks]") and "=> shuffle 0 hash(4)" in lines[0]
    assert lines[1].startswith("stage 1 [4 tasks]") and lines[1].endswith("=> result")


def test_two_shuffles_make_three_stages(local_ctx):
    ds = local_ctx.parallelize([(i % 5, i) for i in range(50)], 3).reduceByKey(add).map(
        lambda kv: (kv[1] % 2, kv[0])).reduceByKey(add)
    text = ds.toDebugString("physical")
    assert text.splitlines()[0] == "3 stages, 9 tasks, 2 shuffles"
    assert text.count("shuffle map") == 2


def test_elided_shuffle_is_shown(local_ctx):
    ds = local_ctx.parallelize([(1, 2)], 2).partitionBy(4).reduceByKey(add, 4)
    text = ds.toDebugString()
    assert "elide_shuffles" in text and "ELIDED" in text
    assert "reduceByKey in place [shuffle elided merge add]" in text or "reduceByKey in place [shuffle elided add]" in text
    assert "1 shuffle" in text


def test_shared_node_is_printed_once(local_ctx):
    src = local_ctx.parallelize(range(4), 2).map(lambda x: (x, x))
    text = src.join(src).toDebugString("logical")
    assert "[read 2 times]" in text and "(shared, see above)" in text


def test_metrics_mode_shows_what_the_last_job_measured(local_ctx):
    ds = wordcount(local_ctx)
    ds.collect()
    text = ds.toDebugString("metrics")
    assert "measured: 4 tasks, 20 records in" in text


def test_unknown_mode_is_a_clear_error(local_ctx):
    with pytest.raises(ValueError, match="mode must be"):
        local_ctx.parallelize([1]).toDebugString("fancy")
