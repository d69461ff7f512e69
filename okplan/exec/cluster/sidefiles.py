"""Side files on a cluster: the client stores each added file's bytes in Redis under its own namespace
with a manifest of name -> (sha256, python?); a worker reads the manifest when it loads a job of that
client and fetches what it does not have yet into its side-file directory, before it unpickles the job's
functions (which may import a module ``addPyFile`` shipped). The manifest is JSON and the content is
checked against its sha256: nothing from Redis is unpickled here.

Keys::

    okplan:files:{client}:manifest    JSON {name: {"sha": ..., "py": bool}}
    okplan:files:{client}:{sha}       the file's bytes
"""

from __future__ import annotations

import json

from ...errors import OkplanError
from .. import sidefiles
from .store import PREFIX, BlockStore


def manifest_key(client: str) -> str:
    return f"{PREFIX}files:{client}:manifest"


def content_key(client: str, sha: str) -> str:
    return f"{PREFIX}files:{client}:{sha}"


def publish(store: BlockStore, client: str, manifest: dict[str, dict], name: str, data: bytes,
            ttl: int | None) -> None:
    """Store ``data`` and the manifest that now lists it (one round trip)."""
    sha = manifest[name]["sha"]
    store.put_many([(content_key(client, sha), data),
                    (manifest_key(client), json.dumps(manifest).encode())], ttl)


def forget(store: BlockStore, client: str, manifest: dict[str, dict]) -> None:
    """Drop a client's side files from Redis (``Context.stop``)."""
    store.delete([manifest_key(client)] + [content_key(client, e["sha"]) for e in manifest.values()])


def install(store: BlockStore, client: str) -> None:
    """In a worker, at job load: place every file of ``client``'s manifest not placed yet."""
    raw = store.get_many([manifest_key(client)])[0]
    if not raw:
        return
    manifest = json.loads(raw)
    missing = [(name, e) for name, e in manifest.items() if sidefiles.placed(name) != e["sha"]]
    if not missing:
        return
    blobs = store.get_many([content_key(client, e["sha"]) for _, e in missing])
    for (name, e), data in zip(missing, blobs):
        if data is None or sidefiles.digest(data) != e["sha"]:
            raise OkplanError(f"side file {name!r} of client {client} is missing from Redis or damaged; "
                              f"add it again with ctx.addFile/addPyFile")
        sidefiles.place(name, data, bool(e.get("py")), e["sha"])


__all__ = ["publish", "forget", "install", "manifest_key", "content_key"]
