"""Spill files: records on local disk as pickled (protocol 5), lz4-framed batches, written once and read
back as streams. One mechanism for everything that leaves memory: runs of aggregations and sorts,
shuffle buckets and partitions of the local executor, groups too big for memory.

A ``SpillDir`` belongs to one job in one process (``OKPLAN_LOCAL_DIR/okplan-spill-<pid>-<tag>``); its
owner removes it when the job (or the task, on a worker) ends, whatever the outcome, and the first
spill of any process removes the directories of processes that died without cleaning up. A ``Run`` is
a segment of a spill file; ``SpilledRecords`` is a sequence of runs plus an in-memory tail, with a
length, that can be iterated any number of times while its directory exists.

>>> d = SpillDir()
>>> run = RunWriter(d, "demo").write([("a", 1), ("b", 2)])
>>> list(read_run(run)), run.count
([('a', 1), ('b', 2)], 2)
>>> d.remove()
"""

from __future__ import annotations

import contextlib
import errno
import gc
import itertools
import marshal
import os
import pickle
import shutil
import struct
import threading
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import lz4.frame

from ..errors import OkplanError
from .memory import current, local_dir

#: records per pickled batch at most: big enough that pickling is whole-list fast, small enough to stream
BATCH_RECORDS = 1024
#: records per batch at most of a run that is read straight through, never merged with others (shuffle
#: buckets, partitions): as many as fit BATCH_BYTES; on a cluster each batch becomes one block chunk
STREAM_BATCH = 1 << 16
#: pickled bytes per batch aimed at: records of a megabyte each go a few at a time, not 1,024 at once
BATCH_BYTES = 1 << 20
_LEN = struct.Struct("<Q")
#: set in a batch's length: the batch is ``marshal``-ed, not pickled (see ``RunWriter``)
_MARSHALLED = 1 << 63
_PREFIX = "okplan-spill-"
#: file buffer of a spill file: a merge keeps one open per run, so it stays small
_BUFFER = 1 << 16


class SpillSpaceError(OkplanError, OSError):
    """The spill directory is full (or not writable)."""


def _space_error(path: str, e: OSError) -> SpillSpaceError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "has no space left"
    else:
        what = f"cannot be written ({e.strerror or e})"
    return SpillSpaceError(f"the spill directory {os.path.dirname(path)} {what}; set OKPLAN_LOCAL_DIR to a "
                           f"directory with room, or raise OKPLAN_TASK_MEMORY so less spills")


@dataclass(frozen=True)
class Run:
    """``count`` records in ``length`` bytes at ``offset`` of the spill file ``path``."""

    path: str
    offset: int
    length: int
    count: int


class SpillDir:
    """The spill directory of one job in this process, made on first use, removed by ``remove()``.

    >>> d = SpillDir("job42"); d.remove()
    """

    def __init__(self, tag: str | None = None, root: str | None = None, wire: bool = False):
        self.root = root or local_dir()
        self.tag = tag or "job"
        #: its runs may be shipped as they are, as pickled blocks (a cluster task's): write them pickled
        self.wire = wire
        self.path: str | None = None
        self._names = itertools.count()
        self._lock = threading.Lock()  # an executor's cache directory serves jobs of several threads
        self.bytes_written = 0

    def new_path(self, what: str) -> str:
        """A fresh file name in this directory."""
        with self._lock:
            if self.path is None:
                self._make()
            return os.path.join(self.path, f"{what}-{next(self._names)}")  # type: ignore[arg-type]

    def _make(self) -> None:
        sweep_stale(self.root)
        path = os.path.join(self.root, f"{_PREFIX}{os.getpid()}-{self.tag}-{uuid.uuid4().hex[:12]}")
        try:
            os.makedirs(path)
        except OSError as e:
            raise _space_error(os.path.join(path, "x"), e) from None
        self.path = path

    def remove(self) -> None:
        """Delete the directory and everything spilled into it."""
        with self._lock:
            if self.path is not None:
                shutil.rmtree(self.path, ignore_errors=True)
                self.path = None

    def __repr__(self) -> str:
        return f"SpillDir({self.path or self.root!r})"


def sweep_stale(root: str) -> int:
    """Remove spill directories under ``root`` whose process no longer runs (it was killed before it
    could clean up). Returns how many were removed."""
    removed = 0
    try:
        names = [n for n in os.listdir(root) if n.startswith(_PREFIX)]
    except OSError:
        return 0
    for name in names:
        pid_text = name[len(_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or pid_alive(int(pid_text)):
            continue
        shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` lives (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # a killed child its parent has not reaped yet still answers signal 0: it is dead all the same
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


class RunWriter:
    """Writes runs one after the other into one spill file of ``spill_dir``.

    >>> d = SpillDir(); w = RunWriter(d, "buckets")
    >>> a, b = w.write([1, 2]), w.write([3]); w.close()
    >>> list(read_run(a)), list(read_run(b))
    ([1, 2], [3])
    >>> d.remove()
    """

    def __init__(self, spill_dir: SpillDir, what: str = "run", private: bool = False):
        self.spill_dir = spill_dir
        #: batches of built-in types only (ints, strings, tuples, lists...) are written with ``marshal``:
        #: about twice as fast to write and to read back as pickle, with references shared the same way.
        #: A batch it cannot write is pickled, and so is the rest of this file's. Not where runs may be
        #: shipped as pickled blocks (``SpillDir.wire``), unless they are ``private`` to the task.
        self.marshal = private or not spill_dir.wire
        self.path = spill_dir.new_path(what)
        try:
            self.f = open(self.path, "wb", buffering=_BUFFER)
        except OSError as e:
            raise _space_error(self.path, e) from None
        self.offset = 0
        #: records of the next batch: 16 at first, then as many as fit BATCH_BYTES at the size of the
        #: last batch (kept across runs: a spill writes many short runs of alike records)
        self.size = 16

    def write(self, records: Iterable, batch_records: int = BATCH_RECORDS) -> Run:
        """Append ``records`` as one run, in batches of at most ``batch_records`` records (a merge
        that reads several runs at once holds one batch of each)."""
        start = self.offset
        count = 0
        it = iter(records)
        write = self.f.write
        size = min(self.size, batch_records)
        try:
            while True:
                batch = list(itertools.islice(it, size))
                if not batch:
                    break
                count += len(batch)
                flag = 0
                if self.marshal:
                    try:
                        raw = marshal.dumps(batch, 4)
                        flag = _MARSHALLED
                    except ValueError:  # a type marshal does not know (any class of the user's)
                        self.marshal = False
                if not flag:
                    raw = pickle.dumps(batch, 5)
                self.size = max(1, min(STREAM_BATCH, BATCH_BYTES * len(batch) // max(1, len(raw))))
                size = min(self.size, batch_records)
                data = lz4.frame.compress(raw, store_size=False)
                del raw
                write(_LEN.pack(len(data) | flag))
                write(data)
                self.offset += _LEN.size + len(data)
        except OSError as e:
            raise _space_error(self.path, e) from None
        self.spill_dir.bytes_written += self.offset - start
        return Run(self.path, start, self.offset - start, count)

    def close(self) -> None:
        try:
            self.f.close()
        except OSError as e:
            raise _space_error(self.path, e) from None

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def write_run(spill_dir: SpillDir, records: Iterable, what: str = "run", batch_records: int = BATCH_RECORDS) -> Run:
    """``records`` as a run of a new spill file."""
    with RunWriter(spill_dir, what) as w:
        return w.write(records, batch_records)


def read_run(run: Run) -> Iterator:
    """The records of ``run``, one batch in memory at a time."""
    return itertools.chain.from_iterable(read_batches(run))


def read_batches(run: Run) -> Iterator[list]:
    """The records of ``run`` as the lists they were written in (iterating those stays in C)."""
    for marshalled, raw in _raw_batches(run):
        with paused_gc():
            batch = marshal.loads(raw) if marshalled else pickle.loads(raw)
        del raw
        yield batch


def read_pickled_batches(run: Run) -> Iterator[bytes]:
    """The batches of ``run`` pickled: each is a list of records pickled with protocol 5 (a batch
    written with ``marshal`` is pickled now)."""
    for marshalled, raw in _raw_batches(run):
        if marshalled:
            with paused_gc():
                raw = pickle.dumps(marshal.loads(raw), 5)
        yield raw


def _raw_batches(run: Run) -> Iterator[tuple[bool, bytes]]:
    """The batches of ``run`` decompressed, each with whether it was marshalled (else pickled)."""
    if run.count == 0:
        return
    with open(run.path, "rb", buffering=_BUFFER) as f:
        f.seek(run.offset)
        left = run.length
        read = f.read
        while left > 0:
            (n,) = _LEN.unpack(read(_LEN.size))
            marshalled = n >= _MARSHALLED
            n &= _MARSHALLED - 1
            data = read(n)
            left -= _LEN.size + n
            yield marshalled, lz4.frame.decompress(data)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while the block runs: for okplan's own loops that make many
    containers and no garbage (unpickling a batch, partitioning a dict), where collections that scan
    every object of a big heap again and again cost more than the work (they doubled a spill's time).
    Never around user code. Inside a task, what it made counts towards freezing the task's heap
    (``TaskMemory.made``)."""
    was = gc.isenabled()
    gc.disable()
    before = gc.get_count()[0]
    try:
        yield
    finally:
        if was:
            memory = current()
            if memory is not None:
                memory.made(gc.get_count()[0] - before)
            gc.enable()


class SpilledRecords:
    """Records partly on disk (``runs``, in order) and partly in memory (``tail``, after them).

    Iterable any number of times while its spill directory exists; ``len()`` without reading. Pickles
    as the plain list of its records, so whatever leaves the process carries the data, not file names.

    >>> d = SpillDir(); r = SpilledRecords([write_run(d, [1, 2])], [3])
    >>> len(r), list(r), list(r)
    (3, [1, 2, 3], [1, 2, 3])
    >>> d.remove()
    """

    __slots__ = ("runs", "tail", "count")

    def __init__(self, runs: list[Run], tail: list | None = None):
        self.runs = runs
        self.tail = tail if tail is not None else []
        self.count = sum(r.count for r in runs) + len(self.tail)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator:
        return itertools.chain.from_iterable(self._batches())

    def _batches(self) -> Iterator[list]:
        for run in self.runs:
            yield from read_batches(run)
        yield self.tail

    def __getitem__(self, index: int) -> Any:
        # rare (a user indexing a huge group): read up to the record instead of holding a list
        if isinstance(index, slice):
            return list(self)[index]
        n = self.count
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("index out of range")
        return next(itertools.islice(iter(self), index, None))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, SpilledRecords)):
            return len(other) == self.count and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like a list

    def __reduce__(self):
        return list, (list(self),)

    def __repr__(self) -> str:
        return f"<{self.count} records, {len(self.runs)} runs on disk>"


def detach(value: Any) -> Any:
    """``value`` with every ``SpilledRecords`` inside lists, tuples and dicts made a plain list, for
    what outlives the spill directory (a local task's result)."""
    t = type(value)
    if t is SpilledRecords:
        return list(value)
    if t is list:
        return [detach(v) for v in value]
    if t is tuple:
        return tuple(detach(v) for v in value)
    if t is dict:
        return {k: detach(v) for k, v in value.items()}
    return value




class OwnedFiles:
    """Spill files that outlive the directory of the job that wrote them (kept in another ``SpillDir``):
    deleted when nothing references this object any more, or with their directory.

    >>> d = SpillDir(); owner = OwnedFiles(); owner.paths.append(d.new_path("x")); open(owner.paths[0], "w").close()
    >>> path = owner.paths[0]; del owner; os.path.exists(path)
    False
    >>> d.remove()
    """

    __slots__ = ("paths", "__weakref__")

    def __init__(self) -> None:
        self.paths: list[str] = []
        weakref.finalize(self, _unlink_paths, self.paths)


def _unlink_paths(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


def linked(rows: list[list], spill_dir: SpillDir) -> tuple[list[list], OwnedFiles]:
    """Rows of blocks with every ``SpilledRecords`` replaced by one wholly in ``spill_dir``: its runs'
    files hard-linked there (nothing is read or copied, and the job may delete its own names), its
    in-memory tail written there as one more run. Other blocks stay as they are. Raises ``OSError``
    where the directory cannot link to the files (another file system)."""
    owner = OwnedFiles()
    links: dict[str, str] = {}
    writer: RunWriter | None = None
    out: list[list] = []
    try:
        for row in rows:
            new_row = []
            for b in row:
                if type(b) is not SpilledRecords:
                    new_row.append(b)
                    continue
                runs = []
                for r in b.runs:
                    path = links.get(r.path)
                    if path is None:
                        path = links[r.path] = spill_dir.new_path("kept")
                        os.link(r.path, path)
                        owner.paths.append(path)
                    runs.append(Run(path, r.offset, r.length, r.count))
                if b.tail:
                    if writer is None:
                        writer = RunWriter(spill_dir, "kept")
                        owner.paths.append(writer.path)
                    runs.append(writer.write(b.tail))
                new_row.append(SpilledRecords(runs))
            out.append(new_row)
    finally:
        if writer is not None:
            writer.close()
    return out, owner


def to_disk(blocks: list, spill_dir: SpillDir, what: str = "block") -> list:
    """The same blocks (lists or ``SpilledRecords``) with everything they hold in memory written to one
    new spill file: the memory of the lists can then be freed."""
    if not any(b for b in blocks if type(b) is list or (type(b) is SpilledRecords and b.tail)):
        return blocks
    out: list = []
    with RunWriter(spill_dir, what) as w:
        for b in blocks:
            if type(b) is list:
                out.append(SpilledRecords([w.write(b)]) if b else b)
            elif type(b) is SpilledRecords and b.tail:
                out.append(SpilledRecords(b.runs + [w.write(b.tail)]))
            else:
                out.append(b)
    return out


def relocate(blocks: list, spill_dir: SpillDir) -> list:
    """The same blocks with their spill files moved into ``spill_dir`` (renamed, not copied): for data
    that outlives the directory it was spilled to, such as a cached partition."""
    moved: dict[str, str] = {}
    out: list = []
    for b in blocks:
        if type(b) is not SpilledRecords:
            out.append(b)
            continue
        runs = []
        for r in b.runs:
            if spill_dir.path is not None and os.path.dirname(r.path) == spill_dir.path:
                runs.append(r)
                continue
            new = moved.get(r.path)
            if new is None:
                new = moved[r.path] = spill_dir.new_path("cached")
                os.rename(r.path, new)
            runs.append(Run(new, r.offset, r.length, r.count))
        out.append(SpilledRecords(runs, b.tail))
    return out


__all__ = ["SpillDir", "Run", "RunWriter", "write_run", "read_run", "SpilledRecords", "SpillSpaceError",
           "sweep_stale", "paused_gc", "read_pickled_batches", "STREAM_BATCH", "detach", "to_disk", "relocate", "linked", "OwnedFiles", "BATCH_RECORDS"]
