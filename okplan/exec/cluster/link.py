"""The client's one connection to the master, shared by every thread of a Context.

ZeroMQ sockets are not thread-safe, so one background thread owns the DEALER socket. It sends what
callers queue, routes every message it receives to the queue of the job it is about (so a thread only
ever sees its own job's messages, in the order the master sent them), and heartbeats the open jobs, so
the master can cancel the jobs of a client that died (``kill -9``) or hangs. With the cluster's secret
the socket is a CURVE client (``security.py``), and a master that refuses the handshake (wrong or
missing secret) breaks the link at once with the reason, instead of a silent timeout.

>>> link = ClientLink("tcp://127.0.0.1:7077", b"c-1", encode, decode)    # doctest: +SKIP
>>> link.open("job1"); link.send("submit", {"job_id": "job1"}, blobs)    # doctest: +SKIP
>>> link.get("job1", timeout=15.0).kind                                  # doctest: +SKIP
'result'
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from typing import Callable, Sequence

import zmq

from ...errors import ClusterUnavailableError
from . import protocol as P
from .security import HandshakeWatch, secure_client

#: seconds between two heartbeats of a client's open jobs (the master's client timeout is several)
HEARTBEAT = 1.0

Encode = Callable[[str, dict, Sequence[bytes]], list]
Decode = Callable[[list], P.Message]


class ClientLink:
    """Owns the socket in a thread of its own; any thread may ``send``, ``get`` its job's messages and
    ``control`` (messages about no job: ``welcome``, ``error``).

    ``encode(kind, body, blobs)`` and ``decode(frames)`` are only ever called from the link's thread,
    so they may keep per-connection state. ``decode`` raises ``ClusterUnavailableError`` for a refusal
    (handed to every waiting thread) and ``P.ProtocolError`` for a message to drop.
    """

    def __init__(self, url: str, identity: bytes, encode: Encode, decode: Decode,
                 heartbeat: float = HEARTBEAT, setup: Callable[[zmq.Socket], None] | None = None,
                 secret: bytes | None = None):
        self.url = url
        self.heartbeat = heartbeat
        self._encode = encode
        self._decode = decode
        self._outbox: deque[tuple[str, dict, Sequence[bytes]]] = deque()
        self._jobs: dict[str, queue.SimpleQueue] = {}
        self._control: queue.SimpleQueue = queue.SimpleQueue()
        self._broken: BaseException | None = None
        self._stopping = False
        self.zctx = zmq.Context()
        self.sock = self.zctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.IDENTITY, identity)
        self.sock.setsockopt(zmq.LINGER, 0)
        if setup is not None:
            setup(self.sock)
        secure_client(self.sock, secret)
        self._watch = HandshakeWatch(self.sock, secret)  # used by the link's thread only, from here on
        try:
            self.sock.connect(url)
        except zmq.ZMQError:
            self._watch.close()
            self.sock.close(0)
            self.zctx.term()
            raise
        # a pipe wakes the thread when something is queued: no polling interval, no lock on the socket
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._loop, name="okplan-client-link", daemon=True)
        self._thread.start()

    # -- any thread ------------------------------------------------------------------------------------
    def send(self, kind: str, body: dict | None = None, blobs: Sequence[bytes] = ()) -> None:
        """Queue a message for the master (sent in order, by the link's thread)."""
        if self._broken is not None:
            raise type(self._broken)(str(self._broken))
        self._outbox.append((kind, body or {}, blobs))
        self._wake()

    def open(self, job_id: str) -> None:
        """Start collecting ``job_id``'s messages (before submitting it) and heartbeating it."""
        self._jobs[job_id] = queue.SimpleQueue()

    def close(self, job_id: str) -> None:
        """Stop collecting and heartbeating ``job_id``; its later messages are dropped."""
        self._jobs.pop(job_id, None)

    def get(self, job_id: str, timeout: float) -> P.Message | None:
        """The next message about ``job_id``, or None after ``timeout`` seconds without one."""
        return self._take(self._jobs[job_id], timeout)

    def control(self, timeout: float) -> P.Message | None:
        """The next message about no job (``welcome``, ``error``), or None after ``timeout``."""
        return self._take(self._control, timeout)

    def stop(self) -> None:
        """Stop the thread and close the socket (queued messages not yet sent are dropped)."""
        if self._stopping:
            return
        self._stopping = True
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(5)
        if self._broken is None:  # threads still waiting for a job hear of it now, not after a timeout
            self._break(ClusterUnavailableError(f"the connection to the okplan master at {self.url} was "
                                                f"closed (the Context was stopped)"))
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _take(self, q: queue.SimpleQueue, timeout: float) -> P.Message | None:
        try:
            item = q.get(timeout=max(0.0, timeout))
        except queue.Empty:
            if self._broken is not None:
                raise type(self._broken)(str(self._broken)) from None
            return None
        if isinstance(item, BaseException):
            raise type(item)(str(item))  # a copy: several threads may raise it at once
        return item

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # a full pipe wakes the thread just as well; a closed one means we are stopping

    # -- the link's thread -----------------------------------------------------------------------------
    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        poller.register(self._watch.mon, zmq.POLLIN)
        next_beat = time.monotonic() + self.heartbeat
        try:
            while not self._stopping:
                wait = max(1, int((next_beat - time.monotonic()) * 1000))
                events = dict(poller.poll(min(wait, 20) if self._outbox else wait))
                if self._wake_r in events:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                refused = self._watch.refused()
                if refused is not None:
                    raise ClusterUnavailableError(f"the master at {self.url} refused this client: {refused}")
                while self._outbox:
                    kind, body, blobs = self._outbox[0]
                    try:  # never block: a connection the master refused has no pipe to queue on
                        self.sock.send_multipart(self._encode(kind, body, blobs), zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break  # tried again in a moment (or the handshake watch says why not)
                    self._outbox.popleft()
                if self.sock in events:
                    self._receive()
                now = time.monotonic()
                if now >= next_beat:
                    next_beat = now + self.heartbeat
                    jobs = list(self._jobs)
                    if jobs:
                        try:
                            self.sock.send_multipart(self._encode(P.CLIENT_HEARTBEAT, {"jobs": jobs}, ()),
                                                     zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            pass  # not connected: a late heartbeat is worth nothing
        except BaseException as e:  # noqa: BLE001 - whatever broke the link, every waiter must hear of it
            self._break(e if isinstance(e, ClusterUnavailableError)
                        else ClusterUnavailableError(f"the connection to the okplan master at {self.url} "
                                                     f"failed: {type(e).__name__}: {e}"))
        finally:
            self._watch.close()
            self.sock.close(0)
            self.zctx.term()

    def _receive(self) -> None:
        for _ in range(1000):  # drain what is there, then look at the outbox and the heartbeat again
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                msg = self._decode(frames)
            except P.ProtocolError:
                continue  # not authentic or not ours: nothing to act on
            except ClusterUnavailableError as e:
                self._break(e)  # refused by the master: every waiting thread raises it
                raise
            jid = msg.body.get("job_id") if isinstance(msg.body, dict) else None
            if jid is None:
                self._control.put(msg)
                continue
            q = self._jobs.get(jid)
            if q is not None:
                q.put(msg)

    def _break(self, error: BaseException) -> None:
        self._broken = error
        self._control.put(error)
        for q in list(self._jobs.values()):
            q.put(error)
