"""Word count: the main okplan job. Runs on the embedded in-process executor by default.

    python examples/wordcount.py                       # local, in this process
    python examples/wordcount.py local-cluster[2]      # Redis + master + 2 workers on this machine
"""

from __future__ import annotations

import random
import sys
import time
from operator import add

from okplan import Context, Logger

WORDS = ("the quick brown fox jumps over the lazy dog and the cat naps while a bird sings "
         "plans stages tasks shuffle partition record key value reduce join sort").split()


def make_lines(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    # a skewed vocabulary, like real text: a few words are very common
    weights = [1.0 / (i + 1) for i in range(len(WORDS))]
    return [" ".join(rng.choices(WORDS, weights, k=12)) for _ in range(n)]


def main(master: str = "local") -> None:
    log = Logger("wordcount")
    log.info("Building list")
    lines = make_lines(20_000)
    with Context(master) as ctx:
        text = ctx.dataSet(lines, label="lines", bufferSize=2_500)
        counts = (text.flatMap(str.split)
                  .filter(lambda w: len(w) > 2)
                  .map(lambda w: (w, 1))
                  .reduceByKey(add)
                  .setName("counts"))
        top = counts.sortBy(lambda kv: kv[1], ascending=False)

        start = time.perf_counter()
        best = top.take(10)
        seconds = time.perf_counter() - start

        print(f"Top words of {len(lines):,} lines ({seconds * 1000:.1f} ms on {ctx.executor.name}):")
        for word, n in best:
            print(f"  {word:<10} {n:>7,}")
        print()
        top.explain()
        log.info({"words": counts.count(), "ms": round(seconds * 1000, 1)}, "done")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "local")
