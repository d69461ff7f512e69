"""The master's web dashboard: a small live page and a JSON API, served by the standard library's HTTP
server in a thread of the master.

The HTTP thread never touches the master's live state: the master loop ``publish``es a plain-data view
(``snapshot.master_view``) every tick, and requests serialise the latest one. Bound to loopback by
default; bound elsewhere, a master with a shared secret requires a token derived from it (in the URL
as ``?token=...``, which the page passes on to the API).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlparse

from ...log import get_logger

log = get_logger(__name__)


def dashboard_token(secret: bytes) -> str:
    """The token a dashboard of a cluster with ``secret`` asks for (anyone with the secret can derive it).

    >>> len(dashboard_token(b"s"))
    32
    """
    return hmac.new(secret, b"okplan-dashboard", hashlib.sha256).hexdigest()[:32]


def parse_hostport(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` -> ``("127.0.0.1", 8080)``; a clear ``ValueError`` otherwise.

    >>> parse_hostport("0.0.0.0:0")
    ('0.0.0.0', 0)
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--dashboard expects HOST:PORT (e.g. 127.0.0.1:7078), got {text!r}")
    return host.strip("[]"), int(port)


class Dashboard:
    """``GET /``: the page; ``GET /api/status``: workers and jobs as JSON; ``GET /api/jobs/<id>``: one job.

    >>> d = Dashboard("127.0.0.1", 0); d.publish({"workers": [], "jobs": []})   # doctest: +SKIP
    >>> d.url                                                                   # doctest: +SKIP
    'http://127.0.0.1:40211/'
    """

    def __init__(self, host: str, port: int, token: str | None = None, public_host: str | None = None):
        self.token = token
        self._view: dict[str, Any] = {"workers": [], "jobs": []}
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        shown = public_host or host
        if ":" in shown:
            shown = f"[{shown}]"
        self.url = f"http://{shown}:{self.server.server_address[1]}/" + (f"?token={token}" if token else "")
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.5},
                                       name="okplan-dashboard", daemon=True)
        self.thread.start()

    def publish(self, view: dict[str, Any]) -> None:
        """Replace the view requests are answered from (the master never mutates it afterwards)."""
        self._view = view

    def view(self) -> dict[str, Any]:
        return self._view

    def allowed(self, query: dict[str, list[str]], headers: Any) -> bool:
        if self.token is None:
            return True
        given = (query.get("token") or [""])[0]
        auth = headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            given = given or auth[7:]
        return hmac.compare_digest(given.encode(), self.token.encode())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _page() -> bytes:
    return resources.files(__package__).joinpath("dashboard.html").read_bytes()


def _handler(dashboard: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "okplan-dashboard"

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            url = urlparse(self.path)
            if not dashboard.allowed(parse_qs(url.query), self.headers):
                self._send(403, b"okplan dashboard: a token is required (open the URL the master logged, "
                                b"or ctx.uiWebUrl)\n", "text/plain; charset=utf-8")
                return
            if url.path in ("/", "/index.html"):
                self._send(200, _page(), "text/html; charset=utf-8")
            elif url.path == "/api/status":
                self._json(dashboard.view())
            elif url.path.startswith("/api/jobs/"):
                job_id = url.path.rsplit("/", 1)[1]
                found = [j for j in dashboard.view().get("jobs", ()) if j["id"] == job_id]
                if found:
                    self._json(found[0])
                else:
                    self._send(404, b'{"error": "no such job (ended jobs are kept for a while)"}',
                               "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _json(self, data: Any) -> None:
            self._send(200, json.dumps(data, default=str).encode(), "application/json")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            log.debug("dashboard request", extra={"request": format % args})

    return Handler
