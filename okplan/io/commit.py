"""The client's side of the commit protocol (Hadoop's FileOutputCommitter, in short).

``setup``: refuse an existing output (unless ``overwrite``), create ``<out>/_temporary``. Tasks write
attempt files there (``sinks.PartWriter``). ``commit``: once every task succeeded, rename each
partition's reported attempt into ``<out>/part-NNNNN``, delete ``_temporary`` (and with it any other
attempt of a retried or duplicated task), then write ``_SUCCESS``. ``abort``: delete ``_temporary`` and
any part already renamed, and the output directory itself if this job created it, so a failed save
leaves nothing behind and can simply be run again.
"""

from __future__ import annotations

import posixpath
from typing import Iterable

from ..errors import OkplanError
from .filesystems import absolute, display_url, filesystem
from .sinks import part_name

TEMPORARY = "_temporary"
SUCCESS = "_SUCCESS"


class FileAlreadyExistsError(OkplanError, FileExistsError):
    """The output directory of a save exists (PySpark's ``FileAlreadyExistsException``)."""


class FileCommitter:
    """One save job's output directory.

    >>> c = FileCommitter("/tmp/out-doctest", overwrite=True)     # doctest: +SKIP
    >>> c.setup(); c.commit([(0, tmp_path)], ".gz")                # doctest: +SKIP
    """

    def __init__(self, path: str, overwrite: bool = False):
        self.fs, self.path = filesystem(absolute(path))
        self.path = self.path.rstrip("/") or "/"
        self.url = display_url(self.fs, self.path)
        self.overwrite = overwrite
        self.temp_dir = posixpath.join(self.path, TEMPORARY, "0")
        self._created = False
        self._committed: list[str] = []

    def setup(self) -> None:
        if self.fs.exists(self.path):
            if not self.overwrite:
                raise FileAlreadyExistsError(f"Output directory {self.url} already exists; pass overwrite=True "
                                             f"to replace it, or save to another path")
            self.fs.rm(self.path, recursive=True)
        self._created = True
        self.fs.makedirs(self.temp_dir, exist_ok=True)

    def commit(self, attempts: Iterable[tuple[int, str]], extension: str = "") -> None:
        """Rename each partition's attempt into place, clean up, write ``_SUCCESS``."""
        try:
            for index, attempt in sorted(attempts):
                final = posixpath.join(self.path, part_name(index, extension))
                self.fs.mv(attempt, final)
                self._committed.append(final)
            self._remove_temporary()
            self.fs.pipe_file(posixpath.join(self.path, SUCCESS), b"")
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Leave no trace of the failed job (best effort: the original error is what matters)."""
        try:
            self._remove_temporary()
            for final in self._committed:
                self._remove(final)
            if self._created and self.fs.isdir(self.path) and not self.fs.ls(self.path):
                self.fs.rmdir(self.path)
        except OSError:
            pass

    def _remove_temporary(self) -> None:
        """Delete ``_temporary``. Attempts still running (the other tasks of a failed job, a duplicate)
        may add a file to their own attempt directory meanwhile, never a new directory (``PartWriter``
        does not create parents), so a few passes always empty it."""
        temp = posixpath.join(self.path, TEMPORARY)
        for _ in range(10):
            try:
                self._remove(temp)
            except OSError:
                continue  # a directory filled up while being removed: go again
            if not self.fs.exists(temp):
                return

    def _remove(self, path: str) -> None:
        try:
            self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass
