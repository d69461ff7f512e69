"""A supervised pool of long-lived task processes: the one place where okplan runs user code away from
the process that must stay alive (a cluster worker's supervisor; later ``local[N]``'s client).

Each slot is one child process, reused task after task, that waits on a pipe for a request, calls the
pool's *handler* on it and sends the reply back. The supervisor never runs user code, so nothing a task
does (holding the GIL for minutes, ``os._exit``, a signal, a segfault, running out of memory) can
stop it from heartbeating or from noticing: a child that dies closes its end of the pipe, the
supervisor sees it at once, starts a replacement and reports the task as failed with the real cause
(``exited with code 1``, ``was killed by signal SIGKILL``).

Requests and replies are a small header (pickled) plus raw byte blobs sent as they are, so a job's
functions that the supervisor already holds as bytes are never pickled again. Children are forked
where the platform allows it (cheap, and they share what the parent imported) and spawned elsewhere.

A request may hold several units of work (a batch of short tasks) that the supervisor can take back
while the child runs one of them: ``submit(..., turns=n)`` puts n tokens in a pipe both processes read,
the child's handler takes one (``take_turn()``) before each unit, and ``revoke(slot)`` takes the rest.
A read of a pipe hands each byte to exactly one reader, so every unit is either run by the child or
taken back by the supervisor, never both and never neither, without a round trip per unit.

>>> pool = TaskPool(2, Echo)                              # doctest: +SKIP
>>> pool.start()                                          # doctest: +SKIP
>>> pool.run({"n": 1}, [b"data"]).reply                   # doctest: +SKIP
({'n': 1}, [b'data'])
>>> pool.stop()                                           # doctest: +SKIP
"""

from __future__ import annotations

import faulthandler
import logging
import multiprocessing
import os
import pickle
import selectors
import signal
import sys
import time
import traceback
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

log = logging.getLogger("okplan.pool")

#: a child that dies sooner than this after its start counts as failing to start: back off
_QUICK_DEATH = 1.0
_MAX_BACKOFF = 5.0
_STOP = "okplan-pool-stop"
_WAKE = "okplan-pool-wake"
#: most turns one request may hold: a pipe write this small is atomic and never blocks
_MAX_TURNS = 4096
#: in a child: the read end of its turn tokens (``take_turn``)
_turns_fd: int | None = None


class Handler(Protocol):
    """What a child runs for each request: ``handler(header, blobs) -> (reply_header, reply_blobs)``.
    A handler with an ``after_reply()`` method has it called once each reply is sent (e.g. to free
    what the request left behind while the supervisor is already forwarding the reply); one with an
    ``idle(waiting)`` method has it called whenever no request is waiting, to do work it put off until
    ``waiting()`` is true.

    It is built in the child by the pool's factory (so per-child state, e.g. functions cached per job,
    lives there). It should catch the user's exceptions itself; an exception that escapes it still
    comes back, as ``Outcome.error``, and the child serves on.
    """

    def __call__(self, header: Any, blobs: list[bytes]) -> tuple[Any, Sequence[bytes]]: ...


@dataclass
class ChildDeath:
    """How a child ended: its exit code, or the signal that killed it."""

    exitcode: int | None
    signal: str | None = None

    @classmethod
    def of(cls, exitcode: int | None) -> "ChildDeath":
        if exitcode is not None and exitcode < 0:
            try:
                name = signal.Signals(-exitcode).name
            except ValueError:
                name = f"signal {-exitcode}"
            return cls(exitcode, name)
        return cls(exitcode)

    def describe(self, hints: bool = True) -> str:
        """``exited with code 1 (os._exit?)``, ``was killed by signal SIGKILL (out of memory? kill -9?)``;
        without the guesses in parentheses when ``hints`` is false."""
        if self.signal is not None:
            hint = _SIGNAL_HINTS.get(self.signal) if hints else None
            return f"was killed by signal {self.signal}" + (f" ({hint})" if hint else "")
        if self.exitcode is None:
            return "closed its pipe and did not exit"
        return f"exited with code {self.exitcode}" + (" (os._exit?)" if hints else "")


_SIGNAL_HINTS = {"SIGKILL": "out of memory? kill -9?", "SIGSEGV": "a crash in native code",
                 "SIGBUS": "a crash in native code", "SIGABRT": "a crash in native code",
                 "SIGTERM": "terminated from outside"}


@dataclass
class Outcome:
    """What became of one request: the handler's ``reply``, or why there is none (``died`` or
    ``error``). ``tag`` is the caller's, given to ``submit``; ``turns_taken``: of a request given
    turns whose child died, how many it had taken (it died in the last of them)."""

    slot: int
    tag: Any
    reply: tuple[Any, list[bytes]] | None = None
    died: ChildDeath | None = None
    error: str | None = None
    turns_taken: int | None = None

    @property
    def ok(self) -> bool:
        return self.reply is not None


@dataclass
class _Slot:
    index: int
    proc: Any = None
    conn: Connection | None = None
    started: float = 0.0
    busy: bool = False
    tag: Any = None
    quick_deaths: int = 0
    restart_at: float | None = None   # set while the slot waits (backoff) for its next child
    deaths: int = 0
    generation: int = 0   # children started in this slot so far
    #: the child's turn tokens (read end, write end), a pipe both processes read (see ``revoke``)
    turns: tuple[Connection, Connection] | None = None
    granted: int = 0      # tokens given with the current request
    revoked: int = 0      # of those, taken back


def default_start_method() -> str:
    """``fork`` where it is safe (Linux), else ``spawn`` (macOS and Windows)."""
    return "fork" if sys.platform.startswith("linux") else "spawn"


class TaskPool:
    """``slots`` child processes running ``factory()``'s handler; see the module docstring.

    The non-blocking API (``submit``, ``poll``, ``fds``) lets a supervisor that also waits on sockets
    fold the children into its own poll loop; ``run`` and ``imap`` block, for callers that only wait
    for tasks.

    >>> with TaskPool(2, Echo) as pool:                  # doctest: +SKIP
    ...     [o.reply[0] for o in pool.imap([(1, []), (2, [])])]
    [1, 2]
    """

    def __init__(self, slots: int, factory: Callable[[], Handler], *, start_method: str | None = None,
                 name: str = "okplan-task"):
        if slots < 1:
            raise ValueError("a pool needs at least one slot")
        self.factory = factory
        self.name = name
        self.start_method = start_method or default_start_method()
        self.mp = multiprocessing.get_context(self.start_method)
        self.slots = [_Slot(i) for i in range(slots)]
        self.replaced = 0   # children started to replace dead ones
        self._started = False
        self._finalizer = weakref.finalize(self, _stop_slots, self.slots)
        self._selector = selectors.DefaultSelector()
        self._selected: tuple = ()

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> "TaskPool":
        """Start every slot's child (once)."""
        if not self._started:
            self._started = True
            for s in self.slots:
                self._spawn(s)
        return self

    def __enter__(self) -> "TaskPool":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask idle children to exit, then terminate (and at last kill) what is left.

        >>> pool.stop()                                   # doctest: +SKIP
        """
        _stop_slots(self.slots, timeout)
        self._started = False
        self._selector.close()
        self._selector = selectors.DefaultSelector()
        self._selected = ()

    def generation(self, slot: int) -> int:
        """How many children ``slot`` has had: a change means a new process, which knows nothing yet."""
        return self.slots[slot].generation

    def pids(self) -> list[int]:
        """Pids of the live children, slot by slot."""
        return [s.proc.pid for s in self.slots if s.proc is not None and s.proc.is_alive()]

    # -- tasks ---------------------------------------------------------------------------------------
    def idle_slots(self) -> list[int]:
        """Slots whose child is up and waiting for a request."""
        return [s.index for s in self.slots if s.conn is not None and not s.busy]

    def submit(self, slot: int, header: Any, blobs: Sequence[bytes] = (), tag: Any = None, turns: int = 0) -> None:
        """Send a request to the idle child of ``slot``; its ``Outcome`` comes from ``poll``. With
        ``turns``, the handler may take that many turns (``take_turn()``), those it has not taken yet
        can be taken back with ``revoke``.

        >>> pool.submit(pool.idle_slots()[0], {"task": 1}, [job_blob], tag="t1")   # doctest: +SKIP
        """
        s = self.slots[slot]
        if s.conn is None or s.busy:
            raise RuntimeError(f"slot {slot} of {self.name} is not idle")
        s.busy, s.tag = True, tag
        _drain_turns(s)  # none are left between requests; a request is never given another's
        s.granted, s.revoked = min(turns, _MAX_TURNS), 0
        try:
            if s.granted:
                os.write(s.turns[1].fileno(), b"t" * s.granted)
            _send(s.conn, header, blobs)
        except OSError:
            pass  # the child is gone: poll() reports it as this request's outcome

    def wake(self) -> None:
        """Nudge every idle child (it answers nothing): a request that follows soon finds it running
        instead of asleep, which after a few ms idle costs hundreds of microseconds.

        >>> pool.wake()                                    # doctest: +SKIP
        """
        for s in self.slots:
            if s.conn is not None and not s.busy:
                try:
                    _send(s.conn, _WAKE, ())
                except OSError:
                    pass  # gone: poll() buries it

    def revoke(self, slot: int) -> int:
        """Take back the turns the child of ``slot`` has not taken yet (from the end of the request):
        how many. The child runs none of them, whatever it is doing meanwhile.

        >>> pool.revoke(0)                                 # doctest: +SKIP
        3
        """
        return _drain_turns(self.slots[slot])

    def fds(self) -> list[int]:
        """File descriptors that become readable when a child replies or dies (for ``zmq.poll``)."""
        out: list[int] = []
        for s in self.slots:
            if s.conn is not None:
                out.append(s.conn.fileno())
                out.append(s.proc.sentinel)
        return out

    def next_restart(self) -> float | None:
        """Seconds until a slot that backs off gets its next child (None: none waits)."""
        waits = [s.restart_at for s in self.slots if s.restart_at is not None]
        return max(0.0, min(waits) - time.monotonic()) if waits else None

    def poll(self, timeout: float | None = 0.0, wake: int | None = None) -> list[Outcome]:
        """Outcomes of finished requests (replies, or deaths of busy children), waiting up to
        ``timeout`` seconds for one, or until the file descriptor ``wake`` is readable (another thread
        wants this one back; the caller reads it). Dead children are replaced here."""
        self._restart_due()
        fds = self.fds()
        if wake is not None:
            fds.append(wake)
        if not fds:
            if timeout:
                time.sleep(min(timeout, self.next_restart() or timeout))
            self._restart_due()
            return []
        # one selector while the children stay the same (by generation: a new child may reuse a dead
        # one's fd numbers, which the old registration no longer covers)
        key = (tuple(s.generation for s in self.slots), tuple(fds))
        if key != self._selected:
            self._selector.close()
            self._selector = selectors.DefaultSelector()
            for fd in fds:
                self._selector.register(fd, selectors.EVENT_READ)
            self._selected = key
        ready = {key.fd for key, _ in self._selector.select(timeout)}
        if wake is not None:
            self._selected = ()   # its number may be another file's next time: register afresh
        return self.collect(ready)

    def collect(self, ready: set[int]) -> list[Outcome]:
        """Like ``poll`` for a caller that already polled ``fds()``: ``ready`` are those readable.

        >>> events = zmq.zmq_poll([(sock, zmq.POLLIN)] + [(fd, zmq.POLLIN) for fd in pool.fds()])  # doctest: +SKIP
        >>> pool.collect({fd for fd, _ in events if isinstance(fd, int)})                          # doctest: +SKIP
        """
        out: list[Outcome] = []
        for s in self.slots:
            if s.conn is not None and (s.conn.fileno() in ready or s.proc.sentinel in ready):
                outcome = self._read(s)
                if outcome is not None:
                    out.append(outcome)
        self._restart_due()
        return out

    def run(self, header: Any, blobs: Sequence[bytes] = ()) -> Outcome:
        """Run one request on an idle child and wait for its outcome.

        >>> pool.run({"task": 1}).reply                    # doctest: +SKIP
        """
        for o in self.imap([(header, blobs)]):
            return o
        raise AssertionError("unreachable")

    def imap(self, requests: Iterable[tuple[Any, Sequence[bytes]]]) -> Iterator[Outcome]:
        """Run ``(header, blobs)`` requests on every slot at once; outcomes in completion order, each
        tagged with its request's position."""
        self.start()
        todo = iter(enumerate(requests))
        pending = 0
        exhausted = False
        while True:
            for slot in self.idle_slots():
                if exhausted:
                    break
                nxt = next(todo, None)
                if nxt is None:
                    exhausted = True
                    break
                i, (header, blobs) = nxt
                self.submit(slot, header, blobs, tag=i)
                pending += 1
            if exhausted and pending == 0:
                return
            for o in self.poll(None if pending else self.next_restart()):
                pending -= 1
                yield o

    # -- children ------------------------------------------------------------------------------------
    def _read(self, s: _Slot) -> Outcome | None:
        """Take a reply from ``s``'s child, or bury it (and start its successor)."""
        try:
            if s.conn.poll():
                header, blobs = _recv(s.conn)
                if s.busy:
                    s.busy = False
                    tag, s.tag = s.tag, None
                    if isinstance(header, _HandlerFailed):
                        return Outcome(s.index, tag, error=header.text)
                    return Outcome(s.index, tag, reply=(header, blobs))
                # nothing is expected from an idle child: ignore it
        except (EOFError, OSError, pickle.UnpicklingError):
            return self._bury(s)  # it died while (or before) answering, or broke the framing
        if not s.proc.is_alive():
            return self._bury(s)
        return None

    def _bury(self, s: _Slot) -> Outcome | None:
        s.proc.join(1.0)
        if s.proc.is_alive():  # closed its pipe but lives on: of no use any more
            s.proc.kill()
            s.proc.join(1.0)
        death = ChildDeath.of(s.proc.exitcode)
        _drain_turns(s)  # the turns it never took, so the rest is what it took
        taken = s.granted - s.revoked if s.granted else None
        _close_turns(s)
        s.conn.close()
        s.conn = s.proc = None
        s.deaths += 1
        lived = time.monotonic() - s.started
        outcome = None
        if s.busy:
            outcome = Outcome(s.index, s.tag, died=death, turns_taken=taken)
            s.busy, s.tag = False, None
            log.warning("%s slot %d: the task's process %s; starting another", self.name, s.index,
                        death.describe())
        else:
            log.warning("%s slot %d: an idle task process %s; starting another", self.name, s.index,
                        death.describe())
        # a task that kills its process is the task's fault: replace at once. A child that dies on its
        # own right after starting would die again: back off.
        s.quick_deaths = s.quick_deaths + 1 if outcome is None and lived < _QUICK_DEATH else 0
        delay = 0.0 if s.quick_deaths == 0 else min(_MAX_BACKOFF, 0.05 * 2 ** s.quick_deaths)
        s.restart_at = time.monotonic() + delay
        self._restart_due()
        return outcome

    def restart_due(self) -> None:
        """Start the children whose backoff has passed (``poll`` and ``collect`` do it too)."""
        self._restart_due()

    def _restart_due(self) -> None:
        now = time.monotonic()
        for s in self.slots:
            if s.restart_at is not None and now >= s.restart_at and self._started:
                try:
                    self._spawn(s)
                    self.replaced += 1
                except OSError as e:  # e.g. no memory to fork: try again later
                    log.error("%s slot %d: could not start a task process: %s", self.name, s.index, e)
                    s.restart_at = now + _MAX_BACKOFF

    def _spawn(self, s: _Slot) -> None:
        mine, theirs = self.mp.Pipe(duplex=True)
        turns = self.mp.Pipe(duplex=False)  # (read, write): both processes read the tokens
        os.set_blocking(turns[0].fileno(), False)  # the open file is shared: non-blocking for the child too
        # a forked child inherits the supervisor's ends of its siblings' pipes; it closes them, so that a
        # sibling's death (or the supervisor's) is still seen as end-of-file
        # not daemonic: user code may start processes of its own (multiprocessing refuses that to a daemon);
        # stop() and the children's death-with-parent make sure none outlives the supervisor
        inherited = [fd for o in self.slots if o.conn is not None
                     for fd in (o.conn.fileno(), *(c.fileno() for c in o.turns or ()))] \
            + [mine.fileno(), turns[1].fileno()] if self.start_method == "fork" else []
        proc = self.mp.Process(target=_child_main, args=(theirs, self.factory, inherited, turns[0]),
                               name=f"{self.name}-{s.index}")
        proc.start()
        theirs.close()
        _close_turns(s)
        s.turns, s.granted, s.revoked = turns, 0, 0
        s.proc, s.conn, s.started, s.restart_at, s.busy = proc, mine, time.monotonic(), None, False
        s.generation += 1


def _stop_slots(slots: list[_Slot], timeout: float = 2.0) -> None:
    """Stop every child of ``slots`` (also at interpreter exit, before multiprocessing would wait for
    idle children that wait for us)."""
    for s in slots:
        if s.conn is not None and not s.busy:
            try:
                _send(s.conn, _STOP, ())
            except OSError:
                pass
    deadline = time.monotonic() + timeout
    for s in slots:
        if s.proc is not None and s.busy:
            s.proc.terminate()  # running user code: it would not read the pipe
    for s in slots:
        if s.proc is not None:
            s.proc.join(max(0.0, deadline - time.monotonic()))
            if s.proc.is_alive():
                s.proc.kill()
                s.proc.join(1.0)
        if s.conn is not None:
            s.conn.close()
        _close_turns(s)
        s.proc = s.conn = None
        s.busy = False


def _drain_turns(s: _Slot) -> int:
    """Read every turn token left in ``s``'s pipe: how many (each one read here is not the child's)."""
    if s.turns is None:
        return 0
    n = 0
    while True:
        try:
            got = os.read(s.turns[0].fileno(), _MAX_TURNS)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            break
        if not got:
            break
        n += len(got)
    s.revoked += n
    return n


def _close_turns(s: _Slot) -> None:
    if s.turns is not None:
        for c in s.turns:
            c.close()
        s.turns = None


def take_turn() -> bool:
    """In a child: take one of the current request's turns; False when the supervisor took the rest
    back (``TaskPool.revoke``), and the unit must not run. Only for requests given ``turns``.

    >>> while take_turn(): run_next_unit()               # doctest: +SKIP
    """
    if _turns_fd is None:
        return True
    try:
        return os.read(_turns_fd, 1) == b"t"
    except BlockingIOError:
        return False


class _HandlerFailed:
    """Sent instead of a reply when the handler itself raised."""

    def __init__(self, text: str):
        self.text = text


def _send(conn: Connection, header: Any, blobs: Sequence[bytes]) -> None:
    conn.send_bytes(pickle.dumps((header, len(blobs)), 5))
    for b in blobs:
        conn.send_bytes(b)


def _recv(conn: Connection) -> tuple[Any, list[bytes]]:
    header, n = pickle.loads(conn.recv_bytes())
    return header, [conn.recv_bytes() for _ in range(n)]


def _child_main(conn: Connection, factory: Callable[[], Handler], inherited: list[int],
                turns: Connection | None = None) -> None:
    """A child's life: serve requests until told to stop or the supervisor goes away."""
    global _turns_fd
    _turns_fd = turns.fileno() if turns is not None else None
    # Ctrl-C in a terminal reaches the whole process group: the supervisor decides what stops
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for fd in inherited:
        try:
            os.close(fd)
        except OSError:
            pass
    _die_with_parent()
    if not faulthandler.is_enabled():  # a segfault in a task then leaves its Python stack on stderr
        faulthandler.enable()
    handler = factory()
    idle = getattr(handler, "idle", None)
    while True:
        if idle is not None and not conn.poll():  # nothing to do: the handler's put-off work, until a request comes
            idle(conn.poll)
        try:
            header, blobs = _recv(conn)
        except (EOFError, OSError):
            return  # the supervisor is gone
        if header == _STOP:
            return
        if header == _WAKE:
            continue
        try:
            reply = handler(header, blobs)
        except BaseException as e:  # noqa: BLE001 - the handler's own guard failed; say so and serve on
            reply = (_HandlerFailed("".join(traceback.format_exception(type(e), e, e.__traceback__))), ())
        try:
            _send(conn, reply[0], reply[1])
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            _send(conn, _HandlerFailed(f"the reply could not be pickled: {e}"), ())
        except OSError:
            return
        reply = None
        after = getattr(handler, "after_reply", None)
        if after is not None:  # work the handler put off until its reply was on its way
            after()


def _die_with_parent() -> None:
    from .cluster.parent import die_with_parent

    die_with_parent()


class Echo:
    """A handler that answers every request with itself (for tests and the benchmark)."""

    def __call__(self, header: Any, blobs: list[bytes]) -> tuple[Any, Sequence[bytes]]:
        return header, blobs


__all__ = ["TaskPool", "Outcome", "ChildDeath", "Handler", "Echo", "default_start_method", "take_turn"]
