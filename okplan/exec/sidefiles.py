"""Side files of ``ctx.addFile``/``ctx.addPyFile`` in this process: one directory per process (PySpark's
``SparkFiles`` root) that holds a copy of every added file, on the client as on every worker.

``place(name, data, python)`` puts a file there (and, for Python code, makes it importable: the
directory goes on ``sys.path`` for ``.py`` files, the archive itself for ``.zip``/``.egg``/``.whl``).
The cluster's workers get the bytes from Redis (``okplan.exec.cluster.sidefiles``).
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import os
import shutil
import sys
import tempfile
import threading

_lock = threading.Lock()
_root: str | None = None
#: name -> sha256 of the content placed under that name
_placed: dict[str, str] = {}

#: archives that go on sys.path themselves (zipimport), as PySpark's addPyFile
ARCHIVES = (".zip", ".egg", ".whl", ".jar")


def root() -> str:
    """This process's side-file directory (made on first use, removed when the process exits)."""
    global _root
    with _lock:
        if _root is None:
            _root = tempfile.mkdtemp(prefix=f"okplan-files-{os.getpid()}-")
            atexit.register(shutil.rmtree, _root, True)
        return _root


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_name(name: str) -> str:
    """A bare file name (no directories), as it will be found by ``SparkFiles.get(name)``."""
    if not name or name in (".", "..") or os.path.basename(name) != name:
        raise ValueError(f"a side file needs a plain file name, got {name!r}")
    return name


def place(name: str, data: bytes, python: bool, sha: str | None = None) -> str:
    """Write ``data`` as ``root()/name`` unless that content is already there; return the path."""
    check_name(name)
    sha = sha or digest(data)
    path = os.path.join(root(), name)
    with _lock:
        if _placed.get(name) != sha:
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # a task reading the old file never sees half of the new one
            _placed[name] = sha
        if python:
            entry = path if name.endswith(ARCHIVES) else os.path.dirname(path)
            if entry not in sys.path:
                sys.path.insert(1, entry)
            importlib.invalidate_caches()
    return path


def placed(name: str) -> str | None:
    """The sha256 of what is placed under ``name`` in this process, or None."""
    return _placed.get(name)


__all__ = ["root", "place", "placed", "digest", "check_name", "ARCHIVES"]
