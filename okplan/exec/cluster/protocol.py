"""The wire format between clients, the master and workers (see docs/PROTOCOL.md).

Every message is one ZeroMQ multipart message ``[header, *blobs]``:

- ``header`` is MessagePack data ``[VERSION, kind, body]``, ``body`` a small map. It is never a
  pickle: decoding it cannot run code, so the master reads messages without trusting them;
- ``blobs`` are opaque bytes (a cloudpickled job, an encoded result) that the master forwards without
  ever unpickling them; only clients and workers unpickle them, and only from their authenticated
  connection to the master.

Authentication and encryption are the connection's (CURVE, keys from the shared secret: see
``security.py``), so a message carries no MAC of its own.

>>> m = unpack(pack(READY, {"credit": 1}))
>>> (m.kind, m.body)
('ready', {'credit': 1})
"""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass, field
from typing import Annotated, Any, NotRequired, Sequence, TypedDict

import msgspec

from ...errors import OkplanError
from ..._version import __version__
from ..serialization import PROTOCOL as PICKLE_PROTOCOL
from .security import load_secret

VERSION = 2

# client -> master
CLIENT_HELLO = "client_hello"     # {versions} -> WELCOME, or a refusal
SUBMIT = "submit"                 # {job_id}, blobs [spec, job]
CANCEL = "cancel"                 # {job_id}
CLIENT_HEARTBEAT = "client_heartbeat"  # {jobs: [job_id, ...]}: the client is alive and still wants these
WAKE = "wake"                     # {}: a job is coming (client -> master -> idle workers -> task processes)
# master -> client
WELCOME = "welcome"               # {redis, workers, slots, hosts, versions, max_message_bytes}
RESULT = "result"                 # {job_id, partition, stored, acc, more?}, blobs: the values not stored
JOB_ALIVE = "job_alive"           # {job_id}: the job is still running (the client's liveness check)
JOB_DONE = "job_done"             # {job_id, metrics, slots, acc}
JOB_FAILED = "job_failed"         # {job_id, reason, message, stage, partition, traceback, acc}, blobs [exc]
ERROR = "error"                   # {message}: the request was refused
# worker -> master
WORKER_HELLO = "worker_hello"     # {name, host, pid, slots, versions}
READY = "ready"                   # {credit}: the worker can take ``credit`` more tasks
HEARTBEAT = "heartbeat"           # {} (sent from the worker's heartbeat socket)
DONE = "done"                     # {job_id, stage, partition, attempt, metrics, acc, stored}, blobs [value]
DONES = "dones"                   # {items: [DONE body, ...], sizes}, blobs [the items' values, end to end]
FAILED = "failed"                 # {job_id, stage, partition, attempt, reason, ...}, blobs [exc]
BYE = "bye"                       # {}: the worker stops
# master -> worker
TASK = "task"                     # {job_id, stage, partition, attempt, more?}, blobs [spec, job] the first time
JOB_END = "job_end"               # {job_id}: forget the job's functions
RESET = "reset"                   # {}: the master does not know you (it restarted): say hello again

#: default bound on one message (all frames) the master accepts; ``okplan master --max-message-bytes``
MAX_MESSAGE_BYTES = 64 << 20
#: more frames than any message of ours has
MAX_FRAMES = 8

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[int, str, dict[str, Any]])


class ProtocolError(OkplanError):
    """A message that is not well formed, not ours or of another protocol version."""


@dataclass
class Message:
    kind: str
    body: dict[str, Any]
    blobs: list[bytes] = field(default_factory=list)


def secret_bytes(secret: str | bytes | None) -> bytes | None:
    """The shared secret from an argument, ``OKPLAN_SECRET`` or ``OKPLAN_SECRET_FILE``; None when none
    is set (see ``security.load_secret``)."""
    return load_secret(secret)


# -- versions exchanged at hello ---------------------------------------------------------------------------

#: what this process tells its peers at hello; a test overrides it (in a spawned process) to play a
#: peer of another version
ADVERTISED: dict[str, Any] = {
    "okplan": __version__,
    "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    "pickle": PICKLE_PROTOCOL,
}


def describe(v: dict[str, Any]) -> str:
    return f"okplan {v.get('okplan')} on Python {v.get('python')} (pickle {v.get('pickle')})"


def version_mismatch(theirs: Any, who: str, me: str) -> str | None:
    """A one-line refusal when ``theirs`` (the versions peer ``who`` advertised) differ from ours (we
    are ``me``), else None.

    >>> version_mismatch(dict(ADVERTISED), "worker w", "the master") is None
    True
    """
    if not isinstance(theirs, dict):
        theirs = {}
    if all(theirs.get(k) == v for k, v in ADVERTISED.items()):
        return None
    return (f"{who} runs {describe(theirs)} but {me} runs {describe(ADVERTISED)}: run the same okplan and "
            f"Python versions on clients, master and workers")


# -- framing -----------------------------------------------------------------------------------------------

def pack(kind: str, body: dict[str, Any] | None = None, blobs: Sequence[bytes] = ()) -> list[bytes]:
    """The frames of one message.

    >>> len(pack(HEARTBEAT))
    1
    """
    return [_encoder.encode((VERSION, kind, body or {})), *blobs]


def unpack(frames: Sequence[Any]) -> Message:
    """Decode ``frames`` (bytes or zmq Frames), raising ``ProtocolError`` when they are not a message
    of this protocol version. Decoding runs no code, whatever the bytes."""
    if not frames:
        raise ProtocolError("empty message")
    parts = [f.bytes if hasattr(f, "bytes") else bytes(f) for f in frames]
    try:
        version, kind, body = _decoder.decode(parts[0])
    except (msgspec.DecodeError, msgspec.ValidationError):
        if version_of_old_header(parts):
            raise ProtocolError(f"a peer of an older okplan (protocol version 1) wrote to this master (protocol "
                                f"version {VERSION}); run the same okplan version everywhere") from None
        raise ProtocolError("malformed message header") from None
    if version != VERSION:
        raise ProtocolError(f"protocol version {version} is not this process's version {VERSION}; "
                            f"run the same okplan version on clients, master and workers")
    return Message(kind, body, parts[1:])


def version_of_old_header(parts: list[bytes]) -> bool:
    """True for protocol version 1's ``[mac, pickled header, ...]`` (recognised by its pickle opcode,
    never unpickled)."""
    return len(parts) >= 2 and len(parts[0]) in (0, 32) and parts[1][:1] == pickle.PROTO


# -- what the master accepts -------------------------------------------------------------------------------

_Name = Annotated[str, msgspec.Meta(max_length=256)]


class _ClientHello(TypedDict):
    versions: NotRequired[dict[str, Any]]


class _WorkerHello(TypedDict):
    name: _Name
    host: NotRequired[str | None]
    pid: NotRequired[int | None]
    slots: Annotated[int, msgspec.Meta(ge=1, le=1024)]
    versions: NotRequired[dict[str, Any]]


class _Job(TypedDict):
    job_id: _Name


class _Task(TypedDict):
    job_id: _Name
    stage: int
    partition: int
    attempt: int


class _Done(_Task):
    metrics: dict[str, Any]  # the task's metrics (``metrics.TaskMetrics``), read by the guarded handler
    acc: bytes
    stored: bool


class _Failed(_Task):
    reason: _Name
    message: NotRequired[str]
    missing: NotRequired[list[tuple[str, str | int, int]]]
    resend_job: NotRequired[bool]
    requeue: NotRequired[bool]
    late: NotRequired[bool]


class _Dones(TypedDict):
    items: Annotated[list[_Done], msgspec.Meta(min_length=1, max_length=4096)]
    #: bytes of each item's value in the one blob, -1 for an item without one
    sizes: Annotated[list[Annotated[int, msgspec.Meta(ge=-1)]], msgspec.Meta(max_length=4096)]


class _Empty(TypedDict):
    pass


class _ClientHeartbeat(TypedDict):
    jobs: Annotated[list[_Name], msgspec.Meta(max_length=10_000)]


#: kind -> (body schema, fewest blobs, most blobs) of every message a master accepts
TO_MASTER: dict[str, tuple[type, int, int]] = {
    CLIENT_HELLO: (_ClientHello, 0, 0),
    WORKER_HELLO: (_WorkerHello, 0, 0),
    SUBMIT: (_Job, 2, 2),
    CANCEL: (_Job, 0, 0),
    CLIENT_HEARTBEAT: (_ClientHeartbeat, 0, 0),
    HEARTBEAT: (_Empty, 0, 0),
    WAKE: (_Empty, 0, 0),
    BYE: (_Empty, 0, 0),
    DONE: (_Done, 0, 1),
    DONES: (_Dones, 0, 1),
    FAILED: (_Failed, 0, 1),
}


def split_dones(msg: Message) -> list[Message]:
    """The DONE messages a checked DONES message carries (``ProtocolError`` if its sizes do not add
    up to its blob).

    >>> [m.blobs for m in split_dones(Message(DONES, {"items": [{}, {}], "sizes": [2, -1]}, [b"ab"]))]
    [[b'ab'], []]
    """
    items, sizes = msg.body["items"], msg.body["sizes"]
    blob = msg.blobs[0] if msg.blobs else b""
    if len(sizes) != len(items) or sum(n for n in sizes if n > 0) != len(blob):
        raise ProtocolError("a dones message whose sizes do not match its items and blob")
    out, at = [], 0
    for body, n in zip(items, sizes):
        out.append(Message(DONE, body, [blob[at:at + n]] if n >= 0 else []))
        at += max(n, 0)
    return out


def check(msg: Message, accepted: dict[str, tuple[type, int, int]] = TO_MASTER) -> None:
    """Raise ``ProtocolError`` unless ``msg`` is a kind in ``accepted`` with the fields (and types) and
    the number of blobs that kind has. The body itself is left as it came (extra fields included)."""
    entry = accepted.get(msg.kind)
    if entry is None:
        raise ProtocolError(f"unknown message kind {msg.kind[:40]!r}")
    schema, fewest, most = entry
    if not fewest <= len(msg.blobs) <= most:
        raise ProtocolError(f"{msg.kind} with {len(msg.blobs)} blobs (expected {fewest}..{most})")
    try:
        msgspec.convert(msg.body, schema)
    except msgspec.ValidationError as e:
        raise ProtocolError(f"bad {msg.kind} message: {e}") from None


# -- refusals ----------------------------------------------------------------------------------------------

#: first frame of a refusal: the master could not accept a peer's message (version, malformed); any
#: okplan version recognises it
REFUSED = b"okplan-refused"


def refusal(reason: str) -> list[bytes]:
    """Frames that tell a peer why its message was dropped (other versions, malformed)."""
    return [REFUSED, reason.encode()]


def refusal_reason(frames: Sequence[Any]) -> str | None:
    """The reason if ``frames`` are a refusal, else None."""
    if len(frames) == 2:
        parts = [f.bytes if hasattr(f, "bytes") else f for f in frames]
        if parts[0] == REFUSED:
            return parts[1].decode(errors="replace")
    return None
