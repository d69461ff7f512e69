"""Who may talk to a cluster: the shared secret, the keys derived from it, and the bind policy.

With a secret, every ZeroMQ connection is a CURVE connection (CurveZMQ: Curve25519 key exchange,
XSalsa20-Poly1305 per message, fresh ephemeral keys per connection). Both long-term key pairs are
derived from the secret, so only its holders can connect (the master checks the client's key through
ZAP) and only the real master can answer (the client checks the master's key). A recorded connection
replayed later fails the handshake (the master's cookie and ephemeral key are new), and a message sent
back to its sender fails to decrypt (each direction has its own nonce prefix). See docs/PROTOCOL.md.

>>> pub, sec = curve_keys(b"s3cret", "master")
>>> len(pub), len(sec)
(40, 40)
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import stat
import sys
from functools import lru_cache
from urllib.parse import urlparse

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from ...errors import ConfigurationError

#: scrypt cost: ~50 ms once per process, so that guessing a weak secret from recorded traffic is slow
_SCRYPT = {"n": 1 << 14, "r": 8, "p": 1}
_SALT = b"okplan-cluster-secret-v1"


def load_secret(secret: str | bytes | None = None) -> bytes | None:
    """The shared secret: ``secret``, else ``OKPLAN_SECRET``, else the contents of the file named by
    ``OKPLAN_SECRET_FILE`` (surrounding whitespace stripped); None when none is set.

    >>> load_secret("abc")
    b'abc'
    """
    if secret is None:
        secret = os.environ.get("OKPLAN_SECRET") or None
    if secret is None:
        path = os.environ.get("OKPLAN_SECRET_FILE")
        if path:
            secret = read_secret_file(path)
    if not secret:
        return None
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def read_secret_file(path: str) -> bytes:
    """The secret stored in ``path``; a one-line ``ConfigurationError`` when it cannot be read or is
    empty. A file others may read is used, with a warning (the secret lets them run code here)."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = f.read().strip()
    except OSError as e:
        raise ConfigurationError(f"cannot read the shared secret from {path!r} (OKPLAN_SECRET_FILE): "
                                 f"{e.strerror}") from None
    if not data:
        raise ConfigurationError(f"the secret file {path!r} is empty")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"okplan: warning: the secret file {path} can be read by other users; chmod 600 it",
              file=sys.stderr)
    return data


def generate_secret() -> str:
    """A fresh random secret (what ``local-cluster`` uses when given none)."""
    return secrets.token_urlsafe(32)


@lru_cache(maxsize=8)
def _root_key(secret: bytes) -> bytes:
    return hashlib.scrypt(secret, salt=_SALT, dklen=32, **_SCRYPT)


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A 32-byte key for one ``purpose`` (e.g. ``"redis-blocks"``), derived from the shared secret.

    >>> derive_key(b"s", "a") != derive_key(b"s", "b")
    True
    """
    return hashlib.blake2b(purpose.encode(), key=_root_key(secret), digest_size=32).digest()


def curve_keys(secret: bytes, role: str) -> tuple[bytes, bytes]:
    """The z85 CURVE key pair (public, secret) of ``role`` (``"master"`` or ``"peer"``)."""
    sk = z85.encode(derive_key(secret, f"curve-{role}"))
    return zmq.curve_public(sk), sk


class _PeerKey:
    """ZAP credentials check: only the peer key derived from the secret may connect."""

    def __init__(self, key: bytes):
        self.key = key

    def callback(self, domain: str, key: bytes) -> bool:
        return key == self.key


def secure_server(zctx: zmq.Context, sock: zmq.Socket, secret: bytes | None) -> ThreadAuthenticator | None:
    """Make ``sock`` (before it binds) a CURVE server accepting only holders of ``secret``; returns the
    ZAP authenticator to ``stop()`` with the socket, or None without a secret (plain connections)."""
    if secret is None:
        return None
    auth = ThreadAuthenticator(zctx, log=_quiet_logger())
    auth.start()
    auth.configure_curve_callback("*", _PeerKey(curve_keys(secret, "peer")[0]))
    pub, sk = curve_keys(secret, "master")
    sock.curve_secretkey = sk
    sock.curve_publickey = pub
    sock.curve_server = True
    return auth


def secure_client(sock: zmq.Socket, secret: bytes | None) -> None:
    """Make ``sock`` (before it connects) a CURVE client of a master sharing ``secret``."""
    if secret is None:
        return
    sock.curve_serverkey = curve_keys(secret, "master")[0]
    pub, sk = curve_keys(secret, "peer")
    sock.curve_publickey = pub
    sock.curve_secretkey = sk


def _quiet_logger():
    import logging  # noqa: PLC0415 - only the master authenticates

    log = logging.getLogger("okplan.zap")
    log.setLevel(logging.WARNING)  # pyzmq logs every allowed and denied connection at debug/info
    return log


_FAILED = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH


class HandshakeWatch:
    """Tells a client or worker that the master refuses its connection (wrong or missing secret, or a
    secret the master does not use), from the socket's handshake events, instead of a silent timeout.

    >>> watch = HandshakeWatch(sock, secret)                 # doctest: +SKIP
    >>> watch.refused()                                      # doctest: +SKIP
    """

    #: failed handshakes in a row (without one success) before we believe it: a master that dies
    #: half way through one handshake fails it too, and sometimes the side that failed closes the
    #: connection before telling why
    TRIES = 2

    def __init__(self, sock: zmq.Socket, secret: bytes | None):
        self.has_secret = secret is not None
        self.mon = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | _FAILED)
        self.sock = sock
        self.failures = 0
        self.reason: str | None = None

    def refused(self) -> str | None:
        """Why the master refuses this connection, once it has refused it ``TRIES`` times in a row."""
        from zmq.utils.monitor import recv_monitor_message  # noqa: PLC0415

        while self.mon.poll(0):
            ev = recv_monitor_message(self.mon)
            if ev["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.failures = 0
                continue
            mismatch = ev["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and \
                ev["value"] == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
            # without a secret only a master that wants one fails the handshake; with one, a master
            # without a secret says "mechanism mismatch" (at least once: the other side of a failure
            # may only see the connection close)
            if not self.has_secret:
                self.reason = "the master requires a shared secret: set OKPLAN_SECRET or OKPLAN_SECRET_FILE"
            elif mismatch or self.reason and "does not use" in self.reason:
                self.reason = ("the master does not use a shared secret but this process has one "
                               "(unset OKPLAN_SECRET / OKPLAN_SECRET_FILE, or give the master the secret)")
            else:
                self.reason = "wrong shared secret, or the master has none (the encrypted handshake failed)"
            # a mechanism mismatch is final (ZeroMQ does not even reconnect after one)
            self.failures += self.TRIES if mismatch else 1
        return self.reason if self.failures >= self.TRIES else None

    def close(self) -> None:
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.mon.close(0)


def is_loopback(bind: str) -> bool:
    """True for ``tcp://127.x.x.x:port``, ``tcp://[::1]:port`` and ``tcp://localhost:port``.

    >>> is_loopback("tcp://127.0.0.1:7077"), is_loopback("tcp://0.0.0.0:7077")
    (True, False)
    """
    host = urlparse(bind).hostname or ""
    if host in ("localhost", "lo"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_policy(bind: str, secret: bytes | None, insecure: bool) -> str | None:
    """May a master listen on ``bind``? Raises ``ConfigurationError`` when not; returns the warning to
    print when it may, but only because of ``insecure``."""
    if secret is not None:
        return None
    if not insecure:
        where = "any local user" if is_loopback(bind) else "anyone who can reach it"
        raise ConfigurationError(
            f"refusing to listen on {bind} without a shared secret: {where} could run code as this user. "
            f"Set OKPLAN_SECRET or OKPLAN_SECRET_FILE (or pass --insecure)")
    if is_loopback(bind):
        return (f"warning: listening on {bind} without a shared secret (--insecure): any local user can run "
                f"code as this user; messages are not encrypted")
    return (f"WARNING: LISTENING ON {bind} WITHOUT A SHARED SECRET (--insecure): ANYONE WHO CAN REACH THIS "
            f"PORT CAN RUN ANY CODE ON EVERY WORKER, AND ALL TRAFFIC IS UNENCRYPTED. Use OKPLAN_SECRET_FILE.")
