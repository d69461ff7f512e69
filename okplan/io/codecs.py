"""Compression: chosen from the file extension when reading (fsspec's ``infer_compression``), from a
Hadoop class name or a plain name when writing. Compressed files cannot be split: one split each."""

from __future__ import annotations

import fsspec.compression
from fsspec.utils import infer_compression

from ..errors import ConfigurationError
from .filesystems import MissingBackendError

#: plain and Hadoop codec names -> (fsspec compression, the part file's extension)
_WRITE = {
    "gzip": ("gzip", ".gz"), "gz": ("gzip", ".gz"), "gzipcodec": ("gzip", ".gz"),
    "bz2": ("bz2", ".bz2"), "bzip2": ("bz2", ".bz2"), "bzip2codec": ("bz2", ".bz2"),
    "xz": ("xz", ".xz"), "lzma": ("xz", ".xz"),
    "zstd": ("zstd", ".zst"), "zst": ("zstd", ".zst"), "zstandardcodec": ("zstd", ".zst"),
}

#: fsspec compression -> the package that brings it
_PACKAGES = {"zstd": "okplan[zstd]", "lz4": "lz4", "snappy": "python-snappy"}
#: extensions of the codecs in _PACKAGES, which fsspec registers only when their package is installed
_EXTENSIONS = {"zst": "zstd", "lz4": "lz4", "snappy": "snappy"}


def _available(compression: str) -> str:
    if compression not in fsspec.compression.compr:
        raise MissingBackendError(f"{compression} compression needs a package that is not installed; "
                                  f"pip install '{_PACKAGES.get(compression, compression)}'")
    return compression


def read_codec(path: str) -> str | None:
    """The compression of ``path`` by its extension (``gzip`` for ``.gz``), None for plain files.

    >>> read_codec("logs/a.log.gz"), read_codec("logs/a.log")
    ('gzip', None)
    """
    # fsspec knows an extension only once its codec's package is installed: a .zst read without
    # zstandard must say what to install, not come back as binary lines
    compression = infer_compression(path) or _EXTENSIONS.get(path.rsplit(".", 1)[-1].lower())
    if compression in (None, "zip"):  # a zip is an archive of files, not a compressed stream
        return None
    return _available(compression)


def write_codec(name: str | None) -> tuple[str | None, str]:
    """``(fsspec compression, extension)`` for ``compressionCodecClass``; accepts Hadoop's class names
    (``org.apache.hadoop.io.compress.GzipCodec``) and plain names (``gzip``, ``bz2``, ``xz``, ``zstd``).

    >>> write_codec("org.apache.hadoop.io.compress.GzipCodec"), write_codec(None)
    (('gzip', '.gz'), (None, ''))
    """
    if name is None:
        return None, ""
    if not isinstance(name, str):
        raise TypeError(f"compressionCodecClass must be a str such as 'gzip' or "
                        f"'org.apache.hadoop.io.compress.GzipCodec', got {type(name).__name__}")
    found = _WRITE.get(name.rsplit(".", 1)[-1].lower())
    if found is None:
        raise ConfigurationError(f"unknown compressionCodecClass {name!r}; use gzip, bz2, xz or zstd, or "
                                 f"org.apache.hadoop.io.compress.GzipCodec / BZip2Codec / ZStandardCodec")
    return _available(found[0]), found[1]
