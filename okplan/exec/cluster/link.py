"""The client's one connection to the master, shared by every thread of a Context.

ZeroMQ sockets are not thread-safe, so the socket belongs to whichever thread holds the link's lock,
one at a time. A thread that waits for its job's next message takes the lock if it is free and reads
the socket itself (it *leads*): it routes every message it receives to the queue of the job it is
about (so a thread only ever sees its own job's messages, in the order the master sent them) and
returns as soon as its own arrives; the other waiting threads take their messages from their queues,
and one of them leads next. A thread that sends writes to the socket itself when the lock is free,
else queues the message for the holder. So the common case, one thread running one job, costs no
thread hop in either direction. A background thread heartbeats the open jobs (so the master can
cancel the jobs of a client that died, ``kill -9``, or hangs) and drains the socket while no thread
waits. With the cluster's secret the socket is a CURVE client (``security.py``), and a master that
refuses the handshake (wrong or missing secret) breaks the link at once with the reason, instead of a
silent timeout.

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
#: a waiting thread that does not lead looks at the lock again after this long at most (the leader
#: hands over when it returns; this only bounds a hand-over that raced with a return)
_FOLLOW = 0.05

Encode = Callable[[str, dict, Sequence[bytes]], list]
Decode = Callable[[list], P.Message]


class _Lead:
    """Put in a waiting thread's queue: the lock is free, come and lead."""


_LEAD = _Lead()


class ClientLink:
    """Owns the socket for the threads of one client; any thread may ``send``, ``get`` its job's
    messages and ``control`` (messages about no job: ``welcome``, ``error``).

    ``encode(kind, body, blobs)`` and ``decode(frames)`` are only ever called by the thread that holds
    the link's lock, one at a time (whichever thread that is). ``decode`` raises
    ``ClusterUnavailableError`` for a refusal (handed to every waiting thread) and ``P.ProtocolError``
    for a message to drop.
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
        #: queues of threads waiting while another one leads (one of them leads next)
        self._followers: dict[int, queue.SimpleQueue] = {}
        self._broken: BaseException | None = None
        self._stopping = False
        #: whoever holds it owns the socket, its handshake monitor and the poller
        self._io = threading.Lock()
        self.zctx = zmq.Context()
        self.sock = self.zctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.IDENTITY, identity)
        self.sock.setsockopt(zmq.LINGER, 0)
        if setup is not None:
            setup(self.sock)
        secure_client(self.sock, secret)
        self._watch = HandshakeWatch(self.sock, secret)
        try:
            self.sock.connect(url)
        except zmq.ZMQError:
            self._watch.close()
            self.sock.close(0)
            self.zctx.term()
            raise
        # a pipe wakes the thread that leads when another thread queued a message for the master
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller = zmq.Poller()
        for what in (self.sock, self._wake_r, self._watch.mon):
            self._poller.register(what, zmq.POLLIN)
        self._next_beat = time.monotonic() + heartbeat
        self._nudge = threading.Event()   # a message waits to be sent
        self._thread = threading.Thread(target=self._keep, name="okplan-client-link", daemon=True)
        self._thread.start()

    # -- any thread ------------------------------------------------------------------------------------
    def send(self, kind: str, body: dict | None = None, blobs: Sequence[bytes] = ()) -> None:
        """Send a message to the master (in order): at once when no other thread holds the socket, else
        by the thread that holds it."""
        if self._broken is not None:
            raise type(self._broken)(str(self._broken))
        self._outbox.append((kind, body or {}, blobs))
        if not self._flush_if_free():
            self._wake()         # a thread that leads wakes from its poll and sends it,
            self._nudge.set()    # else the link's thread does, once the holder let go

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
        self._nudge.set()
        self._wake()  # a thread that leads returns from its poll
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
        deadline = time.monotonic() + max(0.0, timeout)
        me = threading.get_ident()
        while True:
            try:
                item = q.get_nowait()
            except queue.Empty:
                item = None
            left = deadline - time.monotonic()
            if item is None and left > 0:
                if self._broken is None and not self._stopping and self._io.acquire(blocking=False):
                    try:  # lead: read the socket until a message arrives (ours or another job's)
                        self._pump(min(left, max(0.0, self._next_beat - time.monotonic())))
                    except BaseException as e:  # noqa: BLE001 - whatever broke the link, every waiter hears of it
                        self._fail(e)
                    finally:
                        self._release()
                    continue
                # another thread leads and routes our messages to ``q``; we lead once it hands over
                self._followers[me] = q
                try:
                    item = q.get(timeout=min(left, _FOLLOW))
                except queue.Empty:
                    continue
                finally:
                    self._followers.pop(me, None)
            if item is _LEAD:
                continue
            if item is None:
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
            pass  # a full pipe wakes the leader just as well; a closed one means we are stopping

    # -- whoever holds the lock ---------------------------------------------------------------------
    def _flush_if_free(self, recheck: bool = True) -> bool:
        """Send what is queued if no other thread holds the socket; False when one does (it sends)."""
        if not self._outbox:
            return True
        if self._stopping or self._broken is not None or not self._io.acquire(blocking=False):
            return False
        try:
            self._flush()
        except BaseException as e:  # noqa: BLE001
            self._fail(e)
        finally:
            self._release(recheck)
        return True

    def _release(self, recheck: bool = True) -> None:
        """Give the socket back: send what another thread queued while we held it, and let a waiting
        thread lead (its messages would otherwise wait in the socket)."""
        self._io.release()
        if recheck:
            self._flush_if_free(recheck=False)
        for q in list(self._followers.values())[:1]:
            q.put(_LEAD)

    def _flush(self) -> None:
        while self._outbox and not self._stopping:  # stopping: the socket may be closed
            kind, body, blobs = self._outbox[0]
            try:  # never block: a connection the master refused has no pipe to queue on
                self.sock.send_multipart(self._encode(kind, body, blobs), zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return  # tried again in a moment (or the handshake watch says why not)
            self._outbox.popleft()

    def _pump(self, wait: float) -> None:
        """Own the socket for up to ``wait`` seconds (until a message arrives): send what is queued,
        route what arrives to its job's queue, heartbeat."""
        if self._stopping:  # the link's thread closes the socket (under the lock)
            return
        self._flush()
        events = dict(self._poller.poll(max(0, int(wait * 1000)) if not self._outbox else min(20, int(wait * 1000))))
        if self._wake_r in events:
            try:
                os.read(self._wake_r, 4096)
            except (BlockingIOError, OSError):
                pass
        refused = self._watch.refused()
        if refused is not None:
            raise ClusterUnavailableError(f"the master at {self.url} refused this client: {refused}")
        self._flush()
        if self.sock in events:
            self._receive()
        now = time.monotonic()
        if now >= self._next_beat:
            self._next_beat = now + self.heartbeat
            jobs = list(self._jobs)
            if jobs:
                try:
                    self.sock.send_multipart(self._encode(P.CLIENT_HEARTBEAT, {"jobs": jobs}, ()),
                                             zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    pass  # not connected: a late heartbeat is worth nothing

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
            jid = msg.body.get("job_id") if isinstance(msg.body, dict) else None
            if jid is None:
                self._control.put(msg)
                continue
            q = self._jobs.get(jid)
            if q is not None:
                q.put(msg)

    def _fail(self, e: BaseException) -> None:
        self._break(e if isinstance(e, ClusterUnavailableError)
                    else ClusterUnavailableError(f"the connection to the okplan master at {self.url} "
                                                 f"failed: {type(e).__name__}: {e}"))

    def _break(self, error: BaseException) -> None:
        self._broken = error
        self._control.put(error)
        for q in list(self._jobs.values()):
            q.put(error)

    # -- the link's own thread -----------------------------------------------------------------------
    def _keep(self) -> None:
        """Heartbeat and drain the socket while no thread leads; close the socket at the end."""
        try:
            while not self._stopping:
                wait = self._next_beat - time.monotonic() if self._broken is None else self.heartbeat
                nudged = self._nudge.wait(max(0.001, min(self.heartbeat, wait)))
                self._nudge.clear()
                if self._stopping or self._broken is not None:
                    continue
                # a thread that leads heartbeats and sends by itself; one that only sends lets go at once
                if self._io.acquire(timeout=0.005) if nudged else self._io.acquire(blocking=False):
                    try:
                        self._pump(0.0)
                    except BaseException as e:  # noqa: BLE001
                        self._fail(e)
                    finally:
                        self._release()
        finally:
            with self._io:  # a thread that leads leaves its poll at once (stop() woke it)
                self._watch.close()
                self.sock.close(0)
                self.zctx.term()
