"""The Context's file readers (mixed into ``Context``): ``textFile``, ``jsonFile``, ``wholeTextFiles``
and ``pickleFile``. The files are listed and split here, on the client; tasks read their splits where
they run (see ``okplan/io``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _checks as chk
from .io.filesystems import absolute, check_shared, display_url, filesystem
from .io.listing import list_files, split_paths
from .io.splits import Split, group_whole_files, plan_splits
from .logical import nodes as L

if TYPE_CHECKING:
    from .dataset import DataSet


class FileReadersMixin:
    """Datasets read from files: a path is a file, a directory (its files, not sub-directories), a glob,
    or several of these separated by commas; ``s3://``, ``memory://`` and other fsspec URLs work when
    their backend is installed. Relative paths mean this process's working directory."""

    @property
    def defaultMinPartitions(self) -> int:
        """``minPartitions`` when not given: ``min(defaultParallelism, 2)``, as PySpark.

        >>> ctx.defaultMinPartitions        # doctest: +SKIP
        2
        """
        return min(self.defaultParallelism, 2)  # type: ignore[attr-defined]

    def textFile(self, name: str, minPartitions: int | None = None, use_unicode: bool = True) -> "DataSet":
        """The lines of the files ``name`` names (without line terminators). Uncompressed files are split
        into byte ranges, so there are at least ``minPartitions`` partitions; ``.gz``, ``.bz2``, ``.xz``
        and ``.zst`` files are read whole, one partition each. ``use_unicode=False`` gives bytes.

        >>> ctx.textFile("logs/*.log,logs/*.log.gz").count()          # doctest: +SKIP
        1200
        """
        return self._file_source("text", name, minPartitions, use_unicode, "textFile")

    def jsonFile(self, name: str, minPartitions: int | None = None) -> "DataSet":
        """One parsed JSON value per line of the files ``name`` names (JSON lines; blank lines are
        skipped). Splits as ``textFile``. Reads what ``saveAsJsonFile`` writes.

        >>> ctx.jsonFile("events.jsonl").map(lambda e: e["status"]).countByValue()   # doctest: +SKIP
        {200: 3, 404: 1}
        """
        return self._file_source("json", name, minPartitions, True, "jsonFile")

    def wholeTextFiles(self, path: str, minPartitions: int | None = None, use_unicode: bool = True) -> "DataSet":
        """``(url, content)`` per file, e.g. ``("file:/data/a.txt", "...")``; files are packed into about
        ``minPartitions`` partitions (never split; compressed files are decompressed).

        >>> ctx.wholeTextFiles("docs/").keys().collect()               # doctest: +SKIP
        ['file:/home/me/docs/a.txt', 'file:/home/me/docs/b.txt']
        """
        return self._file_source("whole", path, minPartitions, use_unicode, "wholeTextFiles")

    def pickleFile(self, name: str, minPartitions: int | None = None) -> "DataSet":
        """The records ``saveAsPickleFile`` wrote, one partition per part file. It unpickles the files,
        so read only files you trust.

        >>> ctx.parallelize(range(5), 2).saveAsPickleFile("nums")       # doctest: +SKIP
        >>> sorted(ctx.pickleFile("nums").collect())                   # doctest: +SKIP
        [0, 1, 2, 3, 4]
        """
        return self._file_source("pickle", name, minPartitions, True, "pickleFile")

    def _file_source(self, fmt: str, spec: Any, min_partitions: int | None, use_unicode: bool,
                     method: str) -> "DataSet":
        from .dataset import DataSet

        chk.check_partitions(min_partitions, method, "minPartitions")
        if not isinstance(use_unicode, bool):
            raise TypeError(f"{method}() expects a bool for use_unicode, got {type(use_unicode).__name__}")
        if not isinstance(spec, str):
            raise TypeError(f"{method}() expects a path string (a file, directory, glob or comma-separated "
                            f"list), got {type(spec).__name__}")
        entries = split_paths(spec)
        if not entries:
            raise ValueError(f"{method}() needs a path, got {spec!r}")
        for entry in entries:
            check_shared(entry, self.executor.name)  # type: ignore[attr-defined]
        files = list_files(spec)
        n = min_partitions if min_partitions is not None else self.defaultMinPartitions
        parts: list[tuple[Split, ...]]
        if fmt == "whole":
            parts = group_whole_files(files, n)
        elif fmt == "pickle":
            parts = [(Split(f.fs, f.path, 0, f.size),) for f in files]
        else:
            parts = [(s,) for s in plan_splits(files, n)]
        shown = tuple(display_url(*filesystem(absolute(e))) for e in entries)
        node = L.FileSource(fmt=fmt, paths=shown, parts=tuple(parts), num_files=len(files),
                            total_bytes=sum(f.size for f in files), use_unicode=use_unicode,
                            callsite=chk.user_callsite())
        return DataSet(self, node)  # type: ignore[arg-type]
