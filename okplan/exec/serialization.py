"""Blocks and jobs as bytes.

A *block* (one partition, one shuffle bucket, one result) is pickled whole with the C pickler
(protocol 5) and compressed with lz4; cloudpickle is used only when plain pickle refuses (lambdas,
classes defined in ``__main__``), because it is many times slower on large collections. A *job* (the
stages' functions) is always cloudpickled, once per job.

Every block starts with a 16-byte MAC (keyed BLAKE2b over the rest) under a key derived from the
cluster's secret, checked before anything is decompressed or unpickled: whoever can write to Redis but
does not hold the secret cannot make a worker or client unpickle what they wrote.

>>> key = block_key(b"s3cret")
>>> decode_block(encode_block([1, 2, 3], key), key)
[1, 2, 3]
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import io
import os
import pickle
from typing import Any, Callable, Iterator

import cloudpickle
import lz4.block
import lz4.frame

from ..errors import BlockIntegrityError, OkplanError
from ..physical.operators import ReadSource

PROTOCOL = 5

# First byte of every block: how the rest is encoded. lz4.block beats lz4.frame on small blocks (3 vs
# 22 bytes of header) at the same speed; frames are only needed past lz4.block's 2 GB limit.
_RAW = b"\x00"
_LZ4_BLOCK = b"\x01"
_LZ4_FRAME = b"\x02"
_BLOCK_LIMIT = 1 << 30
#: below this many bytes compression cannot pay for itself
_MIN_COMPRESS = 64
#: a block is kept lz4-compressed only when that at least halves it: lz4 costs about as much CPU per MB
#: as pickling text (the client's upload of wordcount's lines: 20 ms of 8.8 MB, to save 3.4 MB), while a
#: megabyte more through Redis on a local network costs about one; blocks that shrink a lot (repeated
#: strings) still are, which also keeps Redis's memory down. Judged on the block's first ``_PROBE``
#: bytes, so an incompressible block (pickled distinct integers) costs a 64 KB probe, not a pass.
_WORTH = 0.5
_PROBE = 64 * 1024
#: bytes of the MAC in front of every block (128 bits: forging one is out of reach)
TAG_SIZE = 16


class TaskPicklingError(OkplanError, pickle.PicklingError):
    """A function or record of a job cannot be sent to the workers."""


def block_key(secret: bytes | None) -> bytes:
    """The key that signs blocks, derived from the cluster's shared secret (a key of its own, so that a
    block's tag reveals nothing usable against the message MACs). Without a secret the key is public:
    blocks are then checked for integrity, not origin.

    >>> len(block_key(b"s3cret")), block_key(None) == block_key(b"")
    (32, True)
    """
    return hmac.new(secret or b"", b"okplan block key v1", hashlib.sha256).digest()


#: the key of a cluster without a secret
UNKEYED = block_key(None)


def _tag(key: bytes, *parts: bytes | memoryview) -> bytes:
    h = hashlib.blake2b(key=key, digest_size=TAG_SIZE)
    for part in parts:
        h.update(part)
    return h.digest()


def open_block(data: bytes | memoryview, key: bytes = UNKEYED, what: str = "a block") -> memoryview:
    """The compressed body of a block after checking its MAC; ``BlockIntegrityError`` if it fails."""
    view = memoryview(data)
    if len(view) < TAG_SIZE + 1 or not hmac.compare_digest(view[:TAG_SIZE], _tag(key, view[TAG_SIZE:])):
        raise BlockIntegrityError(
            f"{what} failed its integrity check (written without this cluster's secret, or altered in "
            f"Redis); it was not unpickled. Check that every client and worker has the same OKPLAN_SECRET")
    return view[TAG_SIZE:]


# -- data ------------------------------------------------------------------------------------------------

def serialize(obj: Any) -> bytes:
    """Pickle ``obj`` whole: the C pickler first, cloudpickle only for what it refuses.

    >>> deserialize(serialize(lambda: 4))()
    4
    """
    try:
        data = _dumps_unmemoized(obj)
    except ValueError:  # a cyclic object: only the memo can pickle it
        data = None
    except (pickle.PicklingError, AttributeError, TypeError):
        data = b"__main__"  # straight to cloudpickle, as below
    try:
        if data is None:
            data = pickle.dumps(obj, PROTOCOL)
        # the C pickler stores classes and functions of the user's script as references to
        # ``__main__``, which a worker cannot resolve; cloudpickle ships those by value
        if b"__main__" not in data:
            return data
    except (pickle.PicklingError, AttributeError, TypeError):
        pass
    try:
        return cloudpickle.dumps(obj, PROTOCOL)
    except Exception as e:
        raise TaskPicklingError(f"data cannot be pickled: {_short(e)}; records must be picklable "
                                f"(convert sockets, files, locks or generators into plain values)") from None


def _dumps_unmemoized(obj: Any) -> bytes:
    """``pickle.dumps`` without the memo (the pickler's fast mode): the memo (a dict entry per tuple
    and string pickled) cost two thirds of the time of pickling a shuffle bucket of pairs. Records
    whose parts are shared are pickled once per reference (equal after unpickling, no longer the same
    object, which nothing crossing a shuffle could rely on); a cyclic object raises ``ValueError``
    (the caller then pickles it with the memo)."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, PROTOCOL)
    pickler.fast = True
    pickler.dump(obj)
    return buf.getvalue()


def deserialize(data: bytes | memoryview) -> Any:
    """The inverse of ``serialize`` (cloudpickle output is plain pickle data)."""
    return pickle.loads(data)


def _compress_parts(raw: bytes) -> tuple[bytes, bytes]:
    n = len(raw)
    if n < _MIN_COMPRESS:
        return _RAW, raw
    if n > 2 * _PROBE and len(lz4.block.compress(memoryview(raw)[:_PROBE], store_size=False)) > _PROBE * _WORTH:
        return _RAW, raw
    if n < _BLOCK_LIMIT:
        z = lz4.block.compress(raw, store_size=True)
        return (_LZ4_BLOCK, z) if len(z) <= n * _WORTH else (_RAW, raw)
    return _LZ4_FRAME, lz4.frame.compress(raw)


def compress(raw: bytes) -> bytes:
    """lz4 with a one-byte header; kept raw when it would not shrink to half (see ``_WORTH``).

    >>> compress(b"ab" * 1000)[:1], compress(bytes(range(256)))[:1]
    (b'\\x01', b'\\x00')
    """
    return b"".join(_compress_parts(raw))


def seal(raw: bytes, key: bytes = UNKEYED) -> bytes:
    """Compress pickled bytes and put the MAC in front: a whole block, in one copy."""
    head, body = _compress_parts(raw)
    return b"".join((_tag(key, head, body), head, body))


def seal_compressed(data: bytes, key: bytes = UNKEYED) -> bytes:
    """A whole block of what ``compress`` returned (the same bytes ``seal`` makes of the raw pickle)."""
    return _tag(key, data) + data


def decompress(data: bytes | memoryview) -> bytes | memoryview:
    head = bytes(data[:1])
    if head == _LZ4_BLOCK:
        return lz4.block.decompress(memoryview(data)[1:])
    if head == _RAW:
        return memoryview(data)[1:]
    if head == _LZ4_FRAME:
        return lz4.frame.decompress(memoryview(data)[1:])
    raise OkplanError(f"not an okplan block (header byte {head!r})")


def encode_block(obj: Any, key: bytes = UNKEYED) -> bytes:
    """``obj`` (a whole partition or bucket) as a signed, compressed block; ``key`` from ``block_key``.

    >>> decode_block(encode_block({"a": 1}))
    {'a': 1}
    """
    return seal(serialize(obj), key)


def decode_block(data: bytes, key: bytes = UNKEYED, what: str = "a block") -> Any:
    """The object ``encode_block`` encoded, after checking the MAC (``BlockIntegrityError``)."""
    return deserialize(decompress(open_block(data, key, what)))


# -- jobs --------------------------------------------------------------------------------------------------

def dumps_function(obj: Any, strip: Callable[[Any], Any] | None = None) -> bytes:
    """cloudpickle ``obj`` (stages and an action). ``strip(o)`` may return a replacement reduce tuple
    for an object, e.g. to ship a source operator without its data, or None to pickle it as usual.

    Raises ``TaskPicklingError`` whose message names the function that holds what cannot be pickled.
    """
    try:
        return _dumps(obj, strip)
    except Exception as e:
        raise TaskPicklingError(_diagnose(obj, e)) from None


def without_source_data(o: Any) -> Any:
    """A ``strip`` for ``dumps_function``: a source operator goes without its partitions (an executor
    that ships each task its own partition, or uploads them, sends them apart)."""
    if type(o) is ReadSource and o.has_data:
        return ReadSource, (o.source_id, o.num_partitions, None, o.label, o.records)
    return None


def loads_function(data: bytes) -> Any:
    return pickle.loads(data)


class _Stripping(cloudpickle.CloudPickler):
    """A CloudPickler that asks ``strip`` first (one class for every job: making a class per job cost
    about as much as pickling a small job)."""

    def __init__(self, file: Any, strip: Callable[[Any], Any]):
        super().__init__(file, protocol=PROTOCOL)
        self.strip = strip

    def reducer_override(self, o: Any) -> Any:
        r = self.strip(o)
        if r is not None:
            return r
        return super().reducer_override(o)


def _dumps(obj: Any, strip: Callable[[Any], Any] | None) -> bytes:
    buf = io.BytesIO()
    if strip is None:
        cloudpickle.CloudPickler(buf, protocol=PROTOCOL).dump(obj)
    else:
        _Stripping(buf, strip).dump(obj)
    return buf.getvalue()


# -- saying what cannot be pickled -------------------------------------------------------------------------

def _diagnose(obj: Any, error: BaseException) -> str:
    """One line: which user function cannot be pickled, where it was defined, what it holds."""
    for op_name, fn in _user_functions(obj):
        try:
            cloudpickle.dumps(fn, PROTOCOL)
        except Exception as e:
            what = _culprit(fn) or _short(e)
            return (f"the function of {op_name} at {_where(fn)} cannot be pickled: it holds {what}; "
                    f"create it inside the function (or once per partition in mapPartitions)")
    return f"the job cannot be pickled: {_short(error)}"


def _user_functions(obj: Any) -> Iterator[tuple[str, Any]]:
    """(operator name, function) for every user function a job's stages and action call."""
    from ..physical.operators import user_functions
    from ..physical.stage import Stage

    stages, action = obj if isinstance(obj, tuple) and len(obj) == 2 else (obj, None)
    if isinstance(stages, dict):
        stages = list(stages.values())
    for stage in stages if isinstance(stages, (list, tuple)) else ():
        if isinstance(stage, Stage):
            for name, f in user_functions(stage.root):
                op = name.split("(")[0]
                yield op[:1].lower() + op[1:], f
            part = getattr(stage.output, "partitioner", None)
            for attr in ("partition_func", "keyfunc"):
                f = getattr(part, attr, None)
                if f is not None:
                    yield "the partitioner", f
    if action is not None:
        name = getattr(action, "name", "the action")
        for f in (getattr(action, "user_func", None), getattr(action, "fn", None)):
            if f is not None:
                yield name, f


def _culprit(fn: Any) -> str | None:
    """``a <socket>``: the first variable the function closes over or reads that cannot be pickled."""
    try:
        cv = inspect.getclosurevars(fn)
    except (TypeError, ValueError):
        return None
    for name, value in list(cv.nonlocals.items()) + list(cv.globals.items()):
        try:
            cloudpickle.dumps(value, PROTOCOL)
        except Exception:
            return f"a <{type(value).__module__}.{type(value).__qualname__}> in {name!r}".replace("<builtins.", "<")
    return None


def _where(fn: Any) -> str:
    code = getattr(fn, "__code__", None)
    if code is None:
        return repr(fn)
    return f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}"


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text if len(text) < 200 else text[:197] + "..."


__all__ = ["serialize", "deserialize", "compress", "decompress", "seal", "open_block", "block_key", "UNKEYED",
           "seal_compressed", "encode_block", "decode_block", "dumps_function", "loads_function", "without_source_data", "TaskPicklingError",
           "BlockIntegrityError"]
