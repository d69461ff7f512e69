"""``SparkFiles``: where the files added with ``ctx.addFile``/``ctx.addPyFile`` are, in the client and
in any task, on every executor.

>>> ctx.addFile("lookup.csv")                                           # doctest: +SKIP
>>> ctx.parallelize([1]).map(lambda _: open(SparkFiles.get("lookup.csv")).read()).first()  # doctest: +SKIP
"""

from __future__ import annotations

import os

from .exec import sidefiles


class SparkFiles:
    """PySpark's accessor, with the same two class methods."""

    @classmethod
    def get(cls, filename: str) -> str:
        """The absolute path of an added file in this process (client or worker).

        >>> SparkFiles.get("lookup.csv")                                # doctest: +SKIP
        '/tmp/okplan-files-1234-abcd/lookup.csv'
        """
        return os.path.join(sidefiles.root(), sidefiles.check_name(filename))

    @classmethod
    def getRootDirectory(cls) -> str:
        """The directory that holds the added files in this process.

        >>> SparkFiles.getRootDirectory()                               # doctest: +SKIP
        '/tmp/okplan-files-1234-abcd'
        """
        return sidefiles.root()


#: ``okplan.files.get(name)``: the same as ``SparkFiles.get``
get = SparkFiles.get

__all__ = ["SparkFiles", "get"]
