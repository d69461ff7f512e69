"""Who may talk to a cluster, and what a hostile peer can do to it: wrong and missing secrets, other
versions, replayed connections, junk and hostile messages (with and without a secret), secrets kept out
of ``ps``. Every test runs real processes on loopback."""

from __future__ import annotations

import pathlib
import pickle
import random
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import psutil
import pytest
import zmq
from cluster_helpers import child_env, cluster_context, okplan_cmd, redis_server, stop_processes, wait_until

from okplan import ClusterUnavailableError, Context, JobFailedError
from okplan.exec.cluster import protocol as P
from okplan.exec.cluster.keeper import EXIT_NO_RESTART
from okplan.exec.cluster.security import curve_keys, secure_client

SECRET = "test-secret-3f9a"
MAX_BYTES = 1 << 20


@contextmanager
def hand_cluster(tmp_path: pathlib.Path, secret: str | None, workers: int = 2) -> Iterator[tuple[str, dict]]:
    """``okplan master`` (``--insecure`` without a secret) and ``workers`` workers on a fresh Redis;
    yields the master's URL and a dict with the master process and the path of its stderr."""
    env = child_env()
    extra = ["--insecure"] if secret is None else []
    if secret is not None:
        env["OKPLAN_SECRET"] = secret
    log = tmp_path / "master.err"
    with redis_server() as redis_url, open(log, "wb") as err:
        master = subprocess.Popen(okplan_cmd("master", "--bind", "tcp://127.0.0.1:0", "--redis", redis_url,
                                             "--heartbeat-timeout", "1.5", "--max-message-bytes", str(MAX_BYTES),
                                             *extra), stdout=subprocess.PIPE, stderr=err, env=env)
        procs = [master]
        try:
            line = master.stdout.readline().decode()
            assert "listening on" in line, log.read_text()
            url = line.split("listening on ")[1].split()[0]
            for _ in range(workers):
                procs.append(subprocess.Popen(okplan_cmd("worker", "--master", url), env=env))
            yield url, {"master": master, "log": log, "env": env, "redis": redis_url}
        finally:
            stop_processes(procs)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """One cluster with a secret and two workers for the tests of this module that leave it whole."""
    with hand_cluster(tmp_path_factory.mktemp("secured"), SECRET) as (url, info):
        yield url, info


@pytest.fixture(scope="module")
def insecure(tmp_path_factory):
    """One ``--insecure`` cluster with two workers."""
    with hand_cluster(tmp_path_factory.mktemp("insecure"), None) as (url, info):
        yield url, info


def connect(url: str, secret: str | None, workers: int = 2) -> Context:
    ctx = Context(url, secret=secret)
    assert wait_until(lambda: ctx.executor.hello()["workers"] >= workers, 20)
    return ctx


def a_job_runs_on_every_worker(url: str, secret: str | None, workers: int = 2) -> None:
    ctx = connect(url, secret, workers)
    try:
        def slow_square(x):
            time.sleep(0.01)
            return x * x
        assert ctx.parallelize(range(200), 8).map(slow_square).sum() == sum(x * x for x in range(200))
        assert len(ctx.lastJobMetrics().tasks_per_worker) == workers
    finally:
        ctx.stop()


# -- secrets -----------------------------------------------------------------------------------------------

def test_a_worker_with_a_wrong_or_missing_secret_exits_non_zero_within_seconds(secured):
    url, _ = secured
    for secret, why in (("not-the-secret", "wrong shared secret"), (None, "requires a shared secret")):
        env = child_env()
        if secret:
            env["OKPLAN_SECRET"] = secret
        t0 = time.monotonic()
        done = subprocess.run(okplan_cmd("worker", "--master", url), env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == EXIT_NO_RESTART, done.stderr
        # a bound against waiting forever (a refused worker would retry until killed), not a speed claim:
        # starting Python and the worker takes seconds on a loaded 2-core machine
        assert time.monotonic() - t0 < 30
        refusals = [line for line in done.stderr.splitlines() if "refused this worker" in line]
        assert len(refusals) == 1 and why in refusals[0] and "Traceback" not in done.stderr, done.stderr


def test_a_client_with_a_wrong_or_missing_secret_raises_within_seconds(secured):
    url, _ = secured
    for secret, why in (("not-the-secret", "wrong shared secret"), (None, "requires a shared secret")):
        t0 = time.monotonic()
        with pytest.raises(ClusterUnavailableError, match=why) as info:
            Context(url, secret=secret, connect_timeout=20)
        # well before connect_timeout: the refusal is heard, not waited out
        assert time.monotonic() - t0 < 15 and "\n" not in str(info.value)


def test_a_secret_client_is_told_the_master_has_none(insecure):
    url, _ = insecure
    with pytest.raises(ClusterUnavailableError, match="does not use a shared secret|or the master has none"):
        Context(url, secret=SECRET, connect_timeout=20)


def test_secret_file_and_no_secret_on_any_command_line(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    env = child_env()
    env["OKPLAN_SECRET_FILE"] = str(secret_file)
    with redis_server() as redis_url:
        master = subprocess.Popen(okplan_cmd("master", "--bind", "tcp://127.0.0.1:0", "--redis", redis_url),
                                  stdout=subprocess.PIPE, env=env)
        worker = None
        try:
            url = master.stdout.readline().decode().split("listening on ")[1].split()[0]
            worker = subprocess.Popen(okplan_cmd("worker", "--master", url, "--slots", "2"), env=env)
            ctx = connect(url, SECRET, workers=1)
            try:
                assert ctx.parallelize(range(10), 2).sum() == 45
                assert ctx.executor.hello()["slots"] == 2
                descendants = psutil.Process(worker.pid).children(recursive=True)
                assert descendants  # the supervisor and its task processes
                for p in [psutil.Process(master.pid), psutil.Process(worker.pid), *descendants]:
                    assert SECRET not in " ".join(p.cmdline())
            finally:
                ctx.stop()
        finally:
            stop_processes([worker, master])


def test_local_cluster_makes_up_a_secret_and_keeps_it_off_command_lines():
    with cluster_context(1) as ctx:
        secret = ctx.executor.secret
        assert secret and len(secret) >= 32
        for pid in [ctx.executor.master_pid, *ctx.executor.worker_pids()]:
            assert secret.decode() not in " ".join(psutil.Process(pid).cmdline())
        with pytest.raises(ClusterUnavailableError, match="requires a shared secret"):
            Context(ctx.executor.master_url, connect_timeout=10)


def test_a_master_without_a_secret_needs_insecure_and_warns():
    refused = subprocess.run(okplan_cmd("master", "--bind", "tcp://127.0.0.1:0"), capture_output=True,
                             text=True, env=child_env(), timeout=30)
    assert refused.returncode == 2 and "--insecure" in refused.stderr
    for bind, loud in (("tcp://127.0.0.1:0", "warning: listening"), ("tcp://0.0.0.0:0", "WARNING: LISTENING")):
        master = subprocess.Popen(okplan_cmd("master", "--bind", bind, "--insecure", "--redis", "redis://127.0.0.1:1/0"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
        try:
            assert loud in master.stderr.readline().decode()
        finally:
            master.terminate()
            master.wait(10)


# -- versions ----------------------------------------------------------------------------------------------

_OTHER_PYTHON = ("import sys; import okplan.exec.cluster.protocol as P; P.ADVERTISED['python'] = '3.99'; "
                 "from okplan.cli import main; sys.exit(main(sys.argv[1:]))")


def test_a_version_mismatch_is_refused_on_both_sides(secured, monkeypatch):
    url, info = secured
    t0 = time.monotonic()
    # --no-restart: the supervisor runs in this patched process, not in a fresh child of the keeper
    done = subprocess.run([sys.executable, "-c", _OTHER_PYTHON, "worker", "--master", url, "--no-restart"],
                          env=info["env"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_NO_RESTART and time.monotonic() - t0 < 10
    refusals = [line for line in done.stderr.splitlines() if "refused this worker" in line]
    assert len(refusals) == 1 and "Python 3.99" in refusals[0] and "Traceback" not in done.stderr
    assert "run the same okplan and Python" in refusals[0]
    monkeypatch.setitem(P.ADVERTISED, "okplan", "0.0.1-other")
    t0 = time.monotonic()
    with pytest.raises(ClusterUnavailableError, match="okplan 0.0.1-other") as err:
        Context(url, secret=SECRET, connect_timeout=20)
    assert time.monotonic() - t0 < 5 and "\n" not in str(err.value)
    assert wait_until(lambda: "Python 3.99" in info["log"].read_text() and "0.0.1-other" in info["log"].read_text())


# -- replayed connections ----------------------------------------------------------------------------------

class Recorder:
    """A TCP relay to the master that records what the peer sent (to replay it later)."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = bytearray()      # peer -> master
        self.received = bytearray()  # master -> peer
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        upstream = socket.create_connection(self.target)
        threading.Thread(target=self._pump, args=(conn, upstream, self.sent), daemon=True).start()
        self._pump(upstream, conn, self.received)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, record: bytearray) -> None:
        try:
            while data := src.recv(65536):
                record += data
                dst.sendall(data)
        except OSError:
            pass


def replay(port: int, data: bytes, seconds: float = 1.5) -> bytes:
    """Send recorded bytes to the master over a new connection; what came back."""
    got = bytearray()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(0.2)
        try:
            s.sendall(data)
        except OSError:
            pass
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            got += chunk
    return bytes(got)


def test_a_replayed_worker_or_client_connection_gets_nothing(secured):
    url, info = secured
    port = int(url.rsplit(":", 1)[1])
    worker_rec = Recorder(port)
    worker = subprocess.Popen(okplan_cmd("worker", "--master", f"tcp://127.0.0.1:{worker_rec.port}"),
                              env=info["env"])
    ctx = connect(url, SECRET, workers=3)
    try:
        time.sleep(1.0)  # a few heartbeats recorded too
        worker.kill()
        worker.wait(10)
        assert wait_until(lambda: ctx.executor.hello()["workers"] == 2, 10)
        for _ in range(3):
            replay(port, bytes(worker_rec.sent))          # hello + heartbeats, replayed
            replay(port, bytes(worker_rec.received))      # the master's own words, reflected
        assert ctx.executor.hello()["workers"] == 2

        client_rec = Recorder(port)
        other = Context(f"tcp://127.0.0.1:{client_rec.port}", secret=SECRET)
        other.stop()
        answer = replay(port, bytes(client_rec.sent))
        # the handshake's greeting and WELCOME command at most: no message, no Redis URL, no key
        assert len(answer) < 400 and info["redis"].encode() not in answer
    finally:
        ctx.stop()


# -- junk and hostile messages -----------------------------------------------------------------------------

class Hostile:
    """Unpickling this writes a marker file: the proof that something unpickled it."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def _frames(rng: random.Random, hostile: bytes) -> list[bytes]:
    """One random message: junk, truncated or wrong headers, right kinds with wrong bodies, hostile
    pickles where a header, a spec or a blob goes."""
    kinds = list(P.TO_MASTER) + ["result", "task", "nonsense", ""]
    choice = rng.randrange(10)
    blob = lambda: rng.randbytes(rng.randrange(0, 64))  # noqa: E731
    if choice == 0:
        return [blob() for _ in range(rng.randrange(1, 12))]
    if choice == 1:
        return [hostile, *[hostile] * rng.randrange(0, 3)]
    if choice == 2:
        return [b"", hostile]                                   # protocol 1's framing, pickled header
    if choice == 3:
        return [P.pack(rng.choice(kinds))[0][: rng.randrange(0, 8)]]  # truncated header
    bodies = [{}, {"job_id": "j"}, {"job_id": rng.randbytes(4)}, {"job_id": "j", "stage": -1, "partition": 10**12,
              "attempt": 0, "reason": "missing"}, {"name": "w", "slots": 10**9}, {"name": "w", "slots": 1},
              {"name": "w", "slots": 1, "versions": P.ADVERTISED}, {"acc": hostile}, {"versions": P.ADVERTISED},
              {"job_id": "j", "stage": 0, "partition": 0, "attempt": 0, "metrics": {"rin": "x"}, "acc": hostile,
               "stored": False}]
    blobs = [rng.choice([hostile, b"", blob()]) for _ in range(rng.randrange(0, 4))]
    return P.pack(rng.choice(kinds), rng.choice(bodies), blobs)


def fuzz(url: str, secret: str | None, marker: pathlib.Path, count: int, seconds: float, seed: int) -> int:
    """Throw ``count`` messages (at most ``seconds``) at the master from peers that come and go; the
    number sent."""
    rng = random.Random(seed)
    hostile = pickle.dumps(Hostile(marker))
    port = int(url.rsplit(":", 1)[1])
    zctx = zmq.Context()
    sent = 0
    deadline = time.monotonic() + seconds
    try:
        # raw TCP junk, and ZeroMQ peers without keys or with made-up keys: never past the handshake
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(rng.randbytes(rng.randrange(1, 2000)))
        strangers = []
        for keys in (None, curve_keys(b"made-up", "peer")):
            d = zctx.socket(zmq.DEALER)
            d.setsockopt(zmq.LINGER, 0)
            if keys is not None:
                d.curve_serverkey, d.curve_publickey, d.curve_secretkey = curve_keys(b"made-up", "master")[0], *keys
            d.connect(url)
            strangers.append(d)
        # peers the master lets in (with the secret, or any peer of an --insecure master), each sending
        # a burst and hanging up: the master's answers go to peers that are gone
        while sent < count and time.monotonic() < deadline:
            d = zctx.socket(zmq.DEALER)
            d.setsockopt(zmq.LINGER, rng.choice([0, 50]))
            d.setsockopt(zmq.IDENTITY, b"f" + rng.randbytes(rng.randrange(1, 20)))
            secure_client(d, secret.encode() if secret else None)
            d.connect(url)
            for _ in range(rng.randrange(1, 20)):
                frames = _frames(rng, hostile)
                for peer in (d, *strangers):
                    _send(peer, frames)
                sent += 1
            if rng.random() < 0.1:
                # over --max-message-bytes in all, and in one frame (then the master hangs up: that peer
                # sends nothing after it, as libzmq aborts a sender whose connection breaks mid-message)
                _send(d, P.pack(P.SUBMIT, {"job_id": "big"}, [b"s" * (MAX_BYTES // 2)] * 3))
                _send(d, [b"x" * (MAX_BYTES + 1)])
            d.close()
        for s in strangers:
            s.close(0)
    finally:
        zctx.term()
    return sent


def _send(sock: zmq.Socket, frames: list[bytes]) -> None:
    """Send without ever blocking the fuzzer (a peer whose connection the master refused has nowhere
    to queue)."""
    try:
        sock.send_multipart(frames, zmq.NOBLOCK)
    except zmq.Again:
        pass


@pytest.mark.parametrize("secret", [SECRET, None], ids=["secret", "insecure"])
def test_junk_and_hostile_messages_leave_the_master_serving_every_worker(tmp_path, secret, request):
    marker = tmp_path / "pwned"
    url, info = request.getfixturevalue("secured" if secret else "insecure")
    sent = fuzz(url, secret, marker, count=1500, seconds=15, seed=13)
    assert sent > 200
    assert info["master"].poll() is None, info["log"].read_text()
    a_job_runs_on_every_worker(url, secret)
    assert not marker.exists()
    assert "dropped" in info["log"].read_text()


@pytest.mark.slow
@pytest.mark.parametrize("secret", [SECRET, None], ids=["secret", "insecure"])
def test_long_fuzz_then_jobs(tmp_path, secret):
    marker = tmp_path / "pwned"
    with hand_cluster(tmp_path, secret) as (url, info):
        for seed in range(5):
            fuzz(url, secret, marker, count=10_000, seconds=60, seed=seed)
            assert info["master"].poll() is None, info["log"].read_text()
            a_job_runs_on_every_worker(url, secret)
        assert not marker.exists()


def test_a_job_over_the_message_limit_gets_a_clear_error(insecure):
    url, _ = insecure
    ctx = connect(url, None)
    try:
        big = b"x" * (MAX_BYTES + 10)
        with pytest.raises(JobFailedError, match="over the master's limit of 1.0 MiB per message"):
            ctx.parallelize([1, 2], 2).map(lambda x: len(big) + x).collect()
        assert ctx.parallelize([1, 2], 2).map(lambda x: x + 1).collect() == [2, 3]
    finally:
        ctx.stop()
