"""Blocks and messages as bytes: lz4 blocks, the cloudpickle fallback, MessagePack headers checked by kind."""

from __future__ import annotations

import pickle
import threading

import msgspec
import pytest

from okplan.exec.cluster import protocol as P
from okplan.exec.cluster.remote_errors import pack_exception, unpack_exception
from okplan.exec.serialization import TaskPicklingError, compress, decode_block, dumps_function, encode_block


@pytest.mark.parametrize("block", [[], [1, 2, 3], [("key", i) for i in range(10_000)], {"a": [b"x" * 100_000]},
                                   [None, 1.5, frozenset({1})]])
def test_blocks_round_trip(block):
    assert decode_block(encode_block(block)) == block


def test_blocks_are_compressed_and_tiny_ones_are_not():
    pairs = [(f"word{i % 50}", 1) for i in range(20_000)]
    raw = pickle.dumps(pairs, 5)
    assert len(encode_block(pairs)) * 3 < len(raw)
    assert compress(b"tiny")[:1] == b"\x00"


def test_plain_pickle_refusals_fall_back_to_cloudpickle():
    square = decode_block(encode_block([lambda x: x * x]))[0]
    assert square(4) == 16


def test_unpicklable_data_says_so():
    with pytest.raises(TaskPicklingError, match="cannot be pickled"):
        encode_block([threading.Lock()])
    lock = threading.Lock()
    with pytest.raises(TaskPicklingError, match="the job cannot be pickled"):
        dumps_function(lambda: lock)


def test_messages_are_data_versioned_and_checked():
    frames = P.pack(P.DONE, {"job_id": "j"}, [b"blob"])
    msg = P.unpack(frames)
    assert (msg.kind, msg.body, msg.blobs) == (P.DONE, {"job_id": "j"}, [b"blob"])
    with pytest.raises(P.ProtocolError, match="malformed"):
        P.unpack([pickle.dumps((P.VERSION, P.DONE, {}))])          # a pickle is never a header
    with pytest.raises(P.ProtocolError, match="older okplan"):
        P.unpack([b"", pickle.dumps((1, P.DONE, {}))])              # protocol 1, recognised unread
    with pytest.raises(P.ProtocolError, match="protocol version"):
        P.unpack(P.pack(P.DONE)[:0] + [msgspec.msgpack.encode((P.VERSION + 1, P.DONE, {}))])
    with pytest.raises(P.ProtocolError, match="bad done"):
        P.check(msg)                                                # fields missing
    with pytest.raises(P.ProtocolError, match="unknown message kind"):
        P.check(P.Message("launch_missiles", {}))
    with pytest.raises(P.ProtocolError, match="blobs"):
        P.check(P.Message(P.SUBMIT, {"job_id": "j"}, [b"spec"]))
    with pytest.raises(P.ProtocolError, match="slots"):
        P.check(P.Message(P.WORKER_HELLO, {"name": "w", "slots": 10**9}))
    assert P.refusal_reason(P.refusal("nope")) == "nope" and P.refusal_reason(frames) is None


class NeedsTwo(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def test_remote_exceptions_keep_type_or_get_a_same_named_substitute():
    body, blob = pack_exception(KeyError("k"), "w1")
    exc = unpack_exception(body, blob)
    assert type(exc) is KeyError and "traceback on worker w1" in exc.__notes__[-1]
    try:
        raise NeedsTwo(1, 2)
    except NeedsTwo as e:
        e.add_note("okplan: raised in stage 0, partition 0")
        body, blob = pack_exception(e, "w2")
    assert blob == b""
    exc = unpack_exception(body, blob)
    assert type(exc).__name__ == "NeedsTwo" and str(exc) == "1/2" and isinstance(exc, Exception)
    assert exc.__notes__[0] == "okplan: raised in stage 0, partition 0"
