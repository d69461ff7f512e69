"""Side files on a cluster: the client stores each added file's bytes in Redis under its own namespace
with a manifest of name -> (sha256, python?); a worker reads the manifest when it loads a job of that
client and fetches what it does not have yet into its side-file directory, before it unpickles the job's
functions (which may import a module ``addPyFile`` shipped). The manifest is JSON behind the cluster's
block MAC (``serialization.seal``), so only a holder of the secret can list a file, and the content is
checked against the manifest's sha256: nothing from Redis is unpickled or imported unless authentic.

Keys::

    okplan:files:{client}:manifest    sealed JSON {name: {"sha": ..., "py": bool}}
    okplan:files:{client}:{sha}       the file's bytes
"""

from __future__ import annotations

import json

from ...errors import OkplanError
from .. import sidefiles
from ..serialization import UNKEYED, decompress, open_block, seal
from .store import PREFIX, BlockStore


def manifest_key(client: str) -> str:
    return f"{PREFIX}files:{client}:manifest"


def content_key(client: str, sha: str) -> str:
    return f"{PREFIX}files:{client}:{sha}"


def publish(store: BlockStore, client: str, manifest: dict[str, dict], name: str, data: bytes,
            ttl: int | None, key: bytes = UNKEYED) -> None:
    """Store ``data`` and the manifest that now lists it (one round trip)."""
    sha = manifest[name]["sha"]
    store.put_many([(content_key(client, sha), data),
                    (manifest_key(client), seal(json.dumps(manifest).encode(), key))], ttl)


def _manifest(store: BlockStore, client: str, key: bytes) -> dict[str, dict] | None:
    raw = store.get_many([manifest_key(client)])[0]
    if not raw:
        return None
    return json.loads(bytes(decompress(open_block(raw, key, f"the side-file manifest of client {client}"))))


def alive_keys(store: BlockStore, client: str, key: bytes = UNKEYED) -> list[str]:
    """The keys of ``client``'s side files (for the client to refresh their expiry while it lives)."""
    manifest = _manifest(store, client, key)
    if not manifest:
        return []
    return [manifest_key(client)] + [content_key(client, e["sha"]) for e in manifest.values()]


def forget(store: BlockStore, client: str, manifest: dict[str, dict]) -> None:
    """Drop a client's side files from Redis (``Context.stop``)."""
    store.delete([manifest_key(client)] + [content_key(client, e["sha"]) for e in manifest.values()])


def install(store: BlockStore, client: str, key: bytes = UNKEYED) -> None:
    """In a worker, at job load: place every file of ``client``'s manifest not placed yet."""
    manifest = _manifest(store, client, key)
    if not manifest:
        return
    missing = [(name, e) for name, e in manifest.items() if sidefiles.placed(name) != e["sha"]]
    if not missing:
        return
    blobs = store.get_many([content_key(client, e["sha"]) for _, e in missing])
    for (name, e), data in zip(missing, blobs):
        if data is None or sidefiles.digest(data) != e["sha"]:
            raise OkplanError(f"side file {name!r} of client {client} is missing from Redis or damaged; "
                              f"add it again with ctx.addFile/addPyFile")
        sidefiles.place(name, data, bool(e.get("py")), e["sha"])


__all__ = ["publish", "forget", "install", "alive_keys", "manifest_key", "content_key"]
