from operator import add

from okplan import ChainableList, Context


def test_seed_example_sums():
    assert Context().dataSet(ChainableList(range(1, 30)), label="sum", bufferSize=1).reduce(lambda x, y: x + y) == 435


def test_wordcount(ctx):
    words = ctx.parallelize(["a b a", "c b a"] * 5, 3).flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(add)
    assert sorted(words.collect()) == [("a", 15), ("b", 10), ("c", 5)]
