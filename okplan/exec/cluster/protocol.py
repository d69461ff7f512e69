"""The wire format between clients, the master and workers (see docs/PROTOCOL.md).

Every message is one ZeroMQ multipart message ``[mac, header, *blobs]``:

- ``header`` is a pickled tuple ``(VERSION, kind, body)``, ``body`` a small dict;
- ``blobs`` are opaque bytes (a cloudpickled job, an encoded result) that the master forwards
  without unpickling;
- ``mac`` is an HMAC-SHA256 of header and blobs under the cluster's shared secret, or empty when the
  cluster has none. It is checked *before* the header is unpickled, so without the secret nobody can
  make a process of the cluster unpickle anything.

>>> m = unpack(pack(READY, {"credit": 1}, secret=b"s"), secret=b"s")
>>> (m.kind, m.body)
('ready', {'credit': 1})
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
from dataclasses import dataclass, field
from typing import Any, Sequence

from ...errors import OkplanError

VERSION = 1

# client -> master
CLIENT_HELLO = "client_hello"     # {} -> WELCOME
SUBMIT = "submit"                 # {job_id, ...meta}, blobs [job]
CANCEL = "cancel"                 # {job_id}
CLIENT_HEARTBEAT = "client_heartbeat"  # {jobs: [job_id, ...]}: the client is alive and still wants these
# master -> client
WELCOME = "welcome"               # {redis, workers, slots}
RESULT = "result"                 # {job_id, partition, stored, acc}, blobs [value] unless stored
JOB_ALIVE = "job_alive"           # {job_id}: the job is still running (the client's liveness check)
JOB_DONE = "job_done"             # {job_id, metrics, slots, acc}
JOB_FAILED = "job_failed"         # {job_id, reason, message, stage, partition, traceback, acc}, blobs [exc]
ERROR = "error"                   # {message}: the request was refused
# worker -> master
WORKER_HELLO = "worker_hello"     # {name, host, pid, slots}
READY = "ready"                   # {credit}: the worker can take ``credit`` more tasks
HEARTBEAT = "heartbeat"           # {} (sent from the worker's heartbeat socket)
DONE = "done"                     # {job_id, stage, partition, attempt, metrics, acc, stored}, blobs [value]
FAILED = "failed"                 # {job_id, stage, partition, attempt, reason, ...}, blobs [exc]
BYE = "bye"                       # {}: the worker stops
# master -> worker
TASK = "task"                     # {job_id, stage, partition, attempt}, blobs [job] the first time
JOB_END = "job_end"               # {job_id}: forget the job's functions
RESET = "reset"                   # {}: the master does not know you (it restarted): say hello again


class ProtocolError(OkplanError):
    """A message that is not authentic, not ours or of another protocol version."""


@dataclass
class Message:
    kind: str
    body: dict[str, Any]
    blobs: list[bytes] = field(default_factory=list)


def secret_bytes(secret: str | bytes | None) -> bytes | None:
    """The shared secret from an argument or ``OKPLAN_SECRET``; None when neither is set."""
    if secret is None:
        secret = os.environ.get("OKPLAN_SECRET") or None
    if secret is None or secret == b"" or secret == "":
        return None
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def _mac(secret: bytes, frames: Sequence[bytes]) -> bytes:
    h = hmac.new(secret, digestmod=hashlib.sha256)
    for f in frames:
        h.update(len(f).to_bytes(8, "little"))  # framing, so frames cannot be re-split
        h.update(f)
    return h.digest()


def pack(kind: str, body: dict[str, Any] | None = None, blobs: Sequence[bytes] = (),
         secret: bytes | None = None) -> list[bytes]:
    """The frames of one message.

    >>> len(pack(HEARTBEAT))
    2
    """
    header = pickle.dumps((VERSION, kind, body or {}), 5)
    frames = [header, *blobs]
    return [_mac(secret, frames) if secret else b"", *frames]


def unpack(frames: Sequence[Any], secret: bytes | None = None) -> Message:
    """Check and decode ``frames`` (bytes or zmq Frames), raising ``ProtocolError`` when they are not
    an authentic message of this protocol version."""
    if len(frames) < 2:
        raise ProtocolError("malformed message")
    parts = [f.bytes if hasattr(f, "bytes") else f for f in frames]
    if secret:
        if not hmac.compare_digest(parts[0], _mac(secret, parts[1:])):
            raise ProtocolError("authentication failed: wrong or missing shared secret")
    elif parts[0]:
        raise ProtocolError("the peer uses a shared secret and this process has none (set OKPLAN_SECRET)")
    try:
        version, kind, body = pickle.loads(parts[1])
    except Exception:
        raise ProtocolError("malformed message header") from None
    if version != VERSION:
        raise ProtocolError(f"protocol version {version} is not this process's version {VERSION}; "
                            f"run the same okplan version on clients, master and workers")
    return Message(kind, body, parts[2:])


#: first frames of a refusal: sent, unauthenticated, to a peer whose message the master could not accept
REFUSED = b"okplan-refused"


def refusal(reason: str) -> list[bytes]:
    """Frames that tell a peer why its message was dropped (bad secret, other protocol version)."""
    return [b"", REFUSED, reason.encode()]


def refusal_reason(frames: Sequence[Any]) -> str | None:
    """The reason if ``frames`` are a refusal, else None."""
    if len(frames) == 3:
        parts = [f.bytes if hasattr(f, "bytes") else f for f in frames]
        if parts[1] == REFUSED:
            return parts[2].decode(errors="replace")
    return None
