"""A path spec to the files it names: a file, a directory (its files), a glob, or several of those
separated by commas, as PySpark's ``textFile`` takes them. Names starting with ``_`` or ``.`` inside a
directory or a glob are skipped (Hadoop's hidden-file filter), so an output directory's ``_SUCCESS`` and
``_temporary`` are never read back as data."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from fsspec.utils import stringify_path

from ..errors import OkplanError
from .filesystems import absolute, display_url, filesystem

_MAGIC = frozenset("*?[")


class InputPathError(OkplanError, FileNotFoundError):
    """A path names nothing (PySpark's ``InvalidInputException``)."""


@dataclass(frozen=True)
class FileInfo:
    """One input file: its file system, its path within it, and its size in bytes."""

    fs: Any
    path: str
    size: int

    @property
    def url(self) -> str:
        return display_url(self.fs, self.path)


def split_paths(spec: str) -> list[str]:
    """A comma-separated path spec as a list; a comma inside ``{a,b}`` is part of one glob.

    >>> split_paths("a.txt,logs/*.gz")
    ['a.txt', 'logs/*.gz']
    """
    parts, depth, cur = [], 0, []
    for ch in spec:
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        depth += (ch == "{") - (ch == "}")
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _visible(path: str) -> bool:
    return not posixpath.basename(path.rstrip("/")).startswith(("_", "."))


def list_files(spec: Any) -> list[FileInfo]:
    """Every file ``spec`` names, in the order named (a directory's and a glob's files sorted by path).

    >>> [f.path for f in list_files("/etc/hostname")]          # doctest: +SKIP
    ['/etc/hostname']
    """
    if not isinstance(spec, str):
        spec = stringify_path(spec)
        if not isinstance(spec, str):
            raise TypeError(f"expected a path string (a file, directory, glob or comma-separated list), "
                            f"got {type(spec).__name__}")
    out: list[FileInfo] = []
    for raw in split_paths(spec):
        fs, path = filesystem(absolute(raw))
        if _MAGIC & set(path):
            matches = [p for p in sorted(fs.glob(path)) if _visible(p)]
            files = [i for i in (fs.info(p) for p in matches) if i["type"] != "directory"]
            for d in (fs.info(p) for p in matches):
                if d["type"] == "directory":
                    files.extend(_dir_files(fs, d["name"]))
            if not files:
                raise InputPathError(f"Input Pattern {display_url(fs, path)} matches 0 files")
        else:
            try:
                info = fs.info(path)
            except FileNotFoundError:
                raise InputPathError(f"Input path does not exist: {display_url(fs, path)}") from None
            files = _dir_files(fs, info["name"]) if info["type"] == "directory" else [info]
        out.extend(FileInfo(fs, fs._strip_protocol(i["name"]), int(i.get("size") or 0)) for i in files)
    return out


def _dir_files(fs: Any, path: str) -> list[dict]:
    """The visible files directly in a directory (sub-directories are not descended into, as Hadoop's
    default), sorted by name."""
    entries = fs.ls(path, detail=True)
    return sorted((e for e in entries if e["type"] != "directory" and _visible(e["name"])), key=lambda e: e["name"])
