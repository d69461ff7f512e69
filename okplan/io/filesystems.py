"""Paths to fsspec file systems. Paths are resolved where the job is planned (the client), so a relative
path means the client's working directory on every executor."""

from __future__ import annotations

import os
from typing import Any

import fsspec
from fsspec.core import split_protocol

from ..errors import ConfigurationError

#: fsspec protocol -> the okplan extra (or package) that brings its backend
EXTRAS = {"s3": "okplan[s3]", "s3a": "okplan[s3]", "gs": "gcsfs", "gcs": "gcsfs", "abfs": "adlfs",
          "az": "adlfs", "http": "aiohttp", "https": "aiohttp", "hdfs": "pyarrow"}


class MissingBackendError(ConfigurationError, ImportError):
    """A path's file system needs a package that is not installed."""


def protocol_of(path: str) -> str:
    """``'file'`` for local paths, else the URL's scheme (``s3``, ``memory``, ...).

    >>> protocol_of("s3://bucket/logs/"), protocol_of("logs/*.gz")
    ('s3', 'file')
    """
    proto, _ = split_protocol(path)
    return "file" if proto in (None, "file", "local") else proto


def absolute(path: str) -> str:
    """``path`` with a local relative path made absolute against this process's working directory;
    URLs are kept as they are.

    >>> absolute("/tmp/x") == "/tmp/x"
    True
    """
    proto, rest = split_protocol(path)
    if proto in (None, "file", "local"):
        return os.path.abspath(os.path.expanduser(rest))
    return path


def filesystem(path: str) -> tuple[Any, str]:
    """``(fsspec file system, path within it)`` for a URL or local path; a missing backend is a one-line
    error that names what to install.

    >>> fs, p = filesystem("/tmp/x.txt"); p
    '/tmp/x.txt'
    """
    try:
        return fsspec.core.url_to_fs(path)
    except ImportError as e:
        proto = protocol_of(path)
        extra = EXTRAS.get(proto)
        hint = f"pip install '{extra}'" if extra else f"install the fsspec backend for {proto}://"
        raise MissingBackendError(f"reading or writing {proto}:// paths needs a package that is not installed "
                                  f"({e}); {hint}") from None
    except ValueError as e:
        if "Protocol not known" in str(e):
            raise ConfigurationError(f"unknown file system in {path!r}: {e}") from None
        raise


def display_url(fs: Any, path: str) -> str:
    """The URL users see in plans, errors and ``wholeTextFiles`` keys: Hadoop's ``file:/abs/path`` for
    local files, ``s3://bucket/key`` and the like otherwise.

    >>> display_url(*filesystem("/tmp/a.txt"))
    'file:/tmp/a.txt'
    """
    if protocol_of(fs.unstrip_protocol(path)) == "file":
        return "file:" + path
    return fs.unstrip_protocol(path)


def check_shared(path: str, executor_name: str) -> None:
    """``memory://`` lives in one process: the cluster's workers could neither read nor write it.

    >>> check_shared("memory://x/out", "cluster")
    Traceback (most recent call last):
    ...
    okplan.errors.ConfigurationError: 'memory://x/out': memory:// exists only in this process, so cluster workers cannot reach it; use a shared file system or an object store (s3://...)
    """
    if executor_name != "local" and protocol_of(path) == "memory":
        raise ConfigurationError(f"{path!r}: memory:// exists only in this process, so cluster workers cannot "
                                 f"reach it; use a shared file system or an object store (s3://...)")
