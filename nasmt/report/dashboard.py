"""The live dashboard: the report page served over HTTP, refreshing as trials land.

Routes (nothing else is served; any other path, `..` tricks included, is a 404):
    /                       the page (same HTML as the report, data embedded)
    /api/data[?v=VERSION]   the page's data as JSON; 204 when VERSION is still current
    /api/data?v=VERSION&delta=1   what changed since VERSION (the page's polls; live.py)
    /static/plotly.min.js   plotly.js from the installed plotly package

The server re-reads a run only when one of its files changed (mtime, size), and then
only the lines appended to trials.jsonl since (live.py), so polling every few seconds
costs a stat() per file; a poll gets only what changed since the version it holds. Binds 127.0.0.1 by default; any
other than a loopback address (`--host 0.0.0.0`) serves the runs to whoever reaches the
port, with no authentication, and `serve` says so in one warning line on stderr.
"""

from __future__ import annotations

import gzip
import ipaddress
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from nasmt.errors import UserError
from nasmt.report.live import LiveData
from nasmt.report.page import plotly_js, render_html

PLOTLY_ROUTE = "/static/plotly.min.js"
DEFAULT_HOST = "127.0.0.1"  # this machine only: the page shows file paths and grammar text
DEFAULT_PORT = 8765
SHUTDOWN_POLL_S = 0.5  # how often serve_forever checks for shutdown (Ctrl-C latency)


DashboardData = LiveData  # the runs being served (nasmt/report/live.py)


# bodies smaller than this are sent as they are (gzip's header and the CPU are not worth it)
GZIP_MIN_BYTES = 4096
GZIP_LEVEL = 5  # JSON and plotly.js compress ~5x at this level; higher levels gain little and cost CPU per poll
PLOTLY_MAX_AGE_S = 86400  # plotly.js only changes with the installed package: a day of browser caching


class _Handler(BaseHTTPRequestHandler):
    """The routes; `data` (a DashboardData) is set on a subclass by `make_server`."""

    data: DashboardData
    server_version = "nasmt-dashboard"
    sys_version = ""
    _plotly: bytes | None = None  # plotly.js, read once per process

    def log_message(self, fmt, *args):  # quiet: no line per poll
        pass

    def _send(self, status, body: bytes, ctype: str, cache: str = "no-store", gzip_ok: bool = False):
        enc = gzip_ok and len(body) > GZIP_MIN_BYTES and "gzip" in (self.headers.get("Accept-Encoding") or "")
        if enc:
            body = gzip.compress(body, compresslevel=GZIP_LEVEL)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        if enc:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _not_found(self):
        self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        parts = urlsplit(self.path)
        path = parts.path
        # exact routes only: no normalization, so `..`, `%2e%2e` and `//` never match
        if path in ("/", "/index.html"):
            _, _, payload = self.data.current()
            page = render_html(payload, plotly_src=PLOTLY_ROUTE).encode("utf-8")
            self._send(HTTPStatus.OK, page, "text/html; charset=utf-8", gzip_ok=True)
        elif path == "/api/data":
            q = parse_qs(parts.query)
            if q.get("delta", [None])[0] == "1":  # the page's polls: only what changed since its version
                status, body, _ = self.data.since(q.get("v", [None])[0])
                if status == HTTPStatus.NO_CONTENT:
                    self.send_response(HTTPStatus.NO_CONTENT)
                    self.send_header("Cache-Control", "no-store")
                    self.end_headers()
                    return
                self._send(HTTPStatus.OK, body, "application/json; charset=utf-8", gzip_ok=True)
                return
            version, body, _ = self.data.current()
            if q.get("v", [None])[0] == version:
                self.send_response(HTTPStatus.NO_CONTENT)
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                return
            self._send(HTTPStatus.OK, body, "application/json; charset=utf-8", gzip_ok=True)
        elif path == PLOTLY_ROUTE:
            if _Handler._plotly is None:
                _Handler._plotly = plotly_js().encode("utf-8")
            self._send(HTTPStatus.OK, _Handler._plotly, "text/javascript; charset=utf-8",
                       cache=f"max-age={PLOTLY_MAX_AGE_S}", gzip_ok=True)
        else:
            self._not_found()

    def do_POST(self):
        self._not_found()


def make_server(runs: list[Path], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                objectives: str | None = None) -> ThreadingHTTPServer:
    """The dashboard HTTP server (not yet serving). Port 0 picks a free port."""
    data = DashboardData(runs, objectives)
    try:
        srv = ThreadingHTTPServer((host, int(port)), type("Handler", (_Handler,), {"data": data}))
    except OSError as e:
        raise UserError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror or e})") from None
    srv.daemon_threads = True
    return srv


def url_of(srv: ThreadingHTTPServer) -> str:
    host, port = srv.server_address[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    return f"http://{shown}:{port}/"


def is_loopback(host: str) -> bool:
    """Whether `host` reaches this machine only: "localhost" or a loopback address
    (127.0.0.0/8, ::1). Any other name or address is treated as reachable from outside."""
    h = str(host).strip().strip("[]").rstrip(".").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, bound: str, port: int) -> str | None:
    """The one warning line for a server listening beyond this machine (None on loopback).
    `bound` is the address the socket actually bound (a name given as --host resolved)."""
    if is_loopback(host) or is_loopback(bound):
        return None
    return (f"nasmt dashboard: warning: --host {host} is not a loopback address: anyone who can reach "
            f"port {port} can read these runs (paths, grammar, metrics); there is no authentication")


def serve(runs: list[Path], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, objectives: str | None = None) -> None:
    """Serve the live dashboard of `runs` until interrupted (Ctrl-C); one warning line on
    stderr when `host` is not a loopback address."""
    srv = make_server(runs, host=host, port=port, objectives=objectives)
    url = url_of(srv)
    warning = exposure_warning(host, str(srv.server_address[0]), srv.server_address[1])
    if warning:
        print(warning, file=sys.stderr, flush=True)
    print(f"nasmt dashboard: serving {', '.join(str(r) for r in runs)} at {url}  (Ctrl-C to stop)", flush=True)
    try:
        srv.serve_forever(poll_interval=SHUTDOWN_POLL_S)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
