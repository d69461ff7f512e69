"""Splits: a split is ``(file, start, length)``; a partition reads one or more of them.

Uncompressed files are cut into byte ranges with PySpark's (Hadoop's ``FileInputFormat``) rule, so
``minPartitions`` is a lower bound on the number of partitions: goal size = total bytes / minPartitions,
split size = max(1, min(goal, block size)), and a file's last split may be up to 10% bigger than the
others instead of leaving a sliver. Compressed files are read whole: one split each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .codecs import read_codec
from .listing import FileInfo

#: Hadoop's block size for local files and S3A (fs.local.block.size, fs.s3a.block.size)
BLOCK_SIZE = 32 * 1024 * 1024
#: Hadoop's SPLIT_SLOP: the last split of a file may be this much bigger than the split size
SPLIT_SLOP = 1.1


@dataclass(frozen=True)
class Split:
    """Bytes ``[start, start + length)`` of ``path`` on file system ``fs``; ``compression`` names the codec
    of a compressed file (then the split is the whole file)."""

    fs: Any
    path: str
    start: int
    length: int
    compression: str | None = None

    @property
    def end(self) -> int:
        return self.start + self.length


def split_size(total: int, min_partitions: int, block_size: int = BLOCK_SIZE) -> int:
    """PySpark's split size for ``total`` bytes and ``minPartitions``.

    >>> split_size(1000, 4)
    250
    """
    goal = total // max(min_partitions, 1)
    return max(1, min(goal, block_size))


def plan_splits(files: list[FileInfo], min_partitions: int, block_size: int = BLOCK_SIZE) -> list[Split]:
    """The splits of ``files``, in file order, one partition each. An empty file is one empty split.

    >>> [(s.start, s.length) for s in plan_splits([FileInfo(None, "a", 100)], 3)]
    [(0, 33), (33, 33), (66, 34)]
    """
    size = split_size(sum(f.size for f in files), min_partitions, block_size)
    out: list[Split] = []
    for f in files:
        codec = read_codec(f.path)
        if codec is not None or f.size == 0:
            out.append(Split(f.fs, f.path, 0, f.size, codec))
            continue
        left = f.size
        while left / size > SPLIT_SLOP:
            out.append(Split(f.fs, f.path, f.size - left, size))
            left -= size
        if left:
            out.append(Split(f.fs, f.path, f.size - left, left))
    return out


def group_whole_files(files: list[FileInfo], min_partitions: int) -> list[tuple[Split, ...]]:
    """Whole files packed into partitions of about total / minPartitions bytes each, in order (as
    ``wholeTextFiles``' combined input format does), never more partitions than files.

    >>> [len(p) for p in group_whole_files([FileInfo(None, str(i), 10) for i in range(5)], 2)]
    [3, 2]
    """
    if not files:
        return []
    target = max(1, -(-sum(f.size for f in files) // max(min_partitions, 1)))
    parts: list[tuple[Split, ...]] = []
    cur: list[Split] = []
    filled = 0
    for f in files:
        cur.append(Split(f.fs, f.path, 0, f.size, read_codec(f.path)))
        filled += f.size
        if filled >= target:
            parts.append(tuple(cur))
            cur, filled = [], 0
    if cur:
        parts.append(tuple(cur))
    return parts
