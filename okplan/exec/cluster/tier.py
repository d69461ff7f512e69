"""The block store's spill tier: blocks Redis has no room for (it answered OOM at its ``maxmemory``), as
files in a directory every process of the cluster sees (``OKPLAN_STORE_SPILL_DIR``; ``local-cluster``
makes one under ``OKPLAN_LOCAL_DIR``). Redis stays the home of blocks; readers look here only for a
block Redis does not have. A plain block is a file named after its key; a hash (one map task's shuffle
buckets, a chunked block) is a directory with a file per field. Files are written under a temporary
name and renamed, so a reader never sees half a block. The bytes are the encoded blocks as Redis would
hold them: nothing here is unpickled.

>>> import tempfile; t = SpillTier(tempfile.mkdtemp())
>>> t.put("okplan:job:j:res:0", b"abc"); t.get("okplan:job:j:res:0")
b'abc'
>>> t.delete(["okplan:job:j:res:0"]); t.get("okplan:job:j:res:0") is None
True
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from typing import Iterable
from urllib.parse import quote

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import StoreFullError


def _name(key: str | bytes) -> str:
    if isinstance(key, bytes):
        key = key.decode()
    return quote(key, safe="")


class SpillTier:
    """Encoded blocks as files under ``path``."""

    def __init__(self, path: str):
        self.path = path

    def _file(self, key: str | bytes) -> str:
        return os.path.join(self.path, _name(key))

    def _dir(self, key: str | bytes) -> str:
        return os.path.join(self.path, _name(key) + ".h")

    def _write(self, path: str, blob: bytes) -> None:
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(blob)
            os.replace(tmp, path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise self.full(e) from None

    def full(self, e: OSError) -> "StoreFullError":
        from .store import StoreFullError  # noqa: PLC0415 - store imports this module

        why = "has no space left" if e.errno in (errno.ENOSPC, errno.EDQUOT) else f"failed: {e}"
        return StoreFullError(f"the block store is full: Redis is at its maxmemory and its spill tier "
                              f"{self.path} {why}; free disk space there, set OKPLAN_STORE_SPILL_DIR to a "
                              f"bigger shared directory, or raise Redis's maxmemory (OKPLAN_REDIS_MAXMEMORY)")

    def put(self, key: str, blob: bytes) -> None:
        os.makedirs(self.path, exist_ok=True)
        self._write(self._file(key), blob)

    def put_fields(self, key: str, mapping: dict) -> None:
        d = self._dir(key)
        os.makedirs(d, exist_ok=True)
        for field, blob in mapping.items():
            f = field if isinstance(field, (bytes, str)) else str(field)
            self._write(os.path.join(d, _name(f)), blob if isinstance(blob, bytes) else str(blob).encode())

    def get(self, key: str) -> bytes | None:
        try:
            with open(self._file(key), "rb") as f:
                return f.read()
        except OSError:
            return None

    def get_field(self, key: str, field: str | bytes | int) -> bytes | None:
        f = field if isinstance(field, (bytes, str)) else str(field)
        try:
            with open(os.path.join(self._dir(key), _name(f)), "rb") as fh:
                return fh.read()
        except OSError:
            return None

    def has(self, key: str) -> bool:
        return os.path.exists(self._file(key)) or os.path.isdir(self._dir(key))

    def in_use(self) -> bool:
        try:
            return any(True for _ in os.scandir(self.path))
        except OSError:
            return False

    def delete(self, keys: Iterable[str | bytes]) -> None:
        if not self.in_use():
            return
        for key in keys:
            try:
                os.unlink(self._file(key))
            except OSError:
                pass
            shutil.rmtree(self._dir(key), ignore_errors=True)


__all__ = ["SpillTier"]
