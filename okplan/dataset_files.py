"""The DataSet's file writers (mixed into ``DataSet``): ``saveAsTextFile``, ``saveAsJsonFile`` and
``saveAsPickleFile``. One ``part-NNNNN`` file per partition, written by the tasks under temporary names
and committed by this client once every task succeeded (``okplan/io/commit.py``), then ``_SUCCESS``."""

from __future__ import annotations

from typing import Any

from . import _checks as chk
from .io.codecs import write_codec
from .io.commit import FileCommitter
from .io.filesystems import check_shared
from .io.sinks import PartWriter


class FileWritersMixin:
    """Saving a dataset as a directory of part files; ``overwrite=True`` replaces an existing one."""

    def saveAsTextFile(self, path: str, compressionCodecClass: str | None = None, overwrite: bool = False) -> None:
        """One line per record: ``str(record)`` in UTF-8 (bytes as they are), one ``part-NNNNN`` per
        partition. ``compressionCodecClass``: ``"gzip"``, ``"bz2"``, ``"xz"``, ``"zstd"`` or Hadoop's
        class names (``"org.apache.hadoop.io.compress.GzipCodec"``); parts then end in ``.gz`` etc.

        >>> ctx.parallelize(["a", "b"], 2).saveAsTextFile("out")            # doctest: +SKIP
        >>> sorted(os.listdir("out"))                                        # doctest: +SKIP
        ['_SUCCESS', 'part-00000', 'part-00001']
        """
        self._save(path, "text", compressionCodecClass, overwrite, "saveAsTextFile")

    def saveAsJsonFile(self, path: str, compressionCodecClass: str | None = None, overwrite: bool = False) -> None:
        """One JSON value per line (``json.dumps(record)``), read back by ``ctx.jsonFile``; otherwise as
        ``saveAsTextFile``.

        >>> ctx.parallelize([{"a": 1}]).saveAsJsonFile("out.jsonl")         # doctest: +SKIP
        >>> ctx.jsonFile("out.jsonl").collect()                              # doctest: +SKIP
        [{'a': 1}]
        """
        self._save(path, "json", compressionCodecClass, overwrite, "saveAsJsonFile")

    def saveAsPickleFile(self, path: str, batchSize: int = 10, overwrite: bool = False) -> None:
        """Records pickled in batches of ``batchSize`` (0: batches of 1,024), read back by
        ``ctx.pickleFile``. Not a Hadoop SequenceFile: only okplan reads it.

        >>> ctx.parallelize([(1, "a")]).saveAsPickleFile("pairs")            # doctest: +SKIP
        >>> ctx.pickleFile("pairs").collect()                                # doctest: +SKIP
        [(1, 'a')]
        """
        chk.check_int(batchSize, "saveAsPickleFile", "batchSize", minimum=0)
        self._save(path, "pickle", None, overwrite, "saveAsPickleFile", batchSize)

    def _save(self, path: Any, fmt: str, codec: str | None, overwrite: bool, method: str,
              batch_size: int = 10) -> None:
        if not isinstance(path, str) or not path:
            raise TypeError(f"{method}() expects a path string for path, got {path!r:.40}")
        check_shared(path, self.context.executor.name)  # type: ignore[attr-defined]
        compression, extension = write_codec(codec)
        committer = FileCommitter(path, overwrite=bool(overwrite))
        committer.setup()
        writer = PartWriter(committer.fs, committer.temp_dir, fmt, compression, extension, batch_size)
        try:
            written = self._narrow(method, None, writer, args=(committer.url,)).collect()  # type: ignore[attr-defined]
        except BaseException:
            committer.abort()
            raise
        committer.commit(written, extension)
