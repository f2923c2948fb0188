"""``selfimprove serve``: the dashboard, live and read-only, on one local port.

The standard library's HTTP server is enough: one page, rendered afresh per request from the
store, GET only.
"""

from __future__ import annotations

import http.server
import logging
import os
from typing import Any

from selfimprove.loop.improver import SelfImprover
from selfimprove.surfaces.report.dashboard import render_dashboard

__all__ = ["make_server", "serve_dashboard"]

logger = logging.getLogger(__name__)


def make_server(
    home: str | os.PathLike[str] | None, *, host: str = "127.0.0.1", port: int = 8765
) -> http.server.ThreadingHTTPServer:
    """A server whose ``/`` is the dashboard of ``home`` (other paths: 404; writes: 405).

    The home must exist; it is opened read-only (nothing is created or written there).
    """
    si = SelfImprover(home, read_only=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in ("/", "/index.html"):
                self.send_error(404, "only / is served")
                return
            body = render_dashboard(si).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.send_error(405, "the dashboard is read-only")

        do_PUT = do_DELETE = do_POST

        def log_message(self, format: str, *args: Any) -> None:
            logger.info("%s %s", self.address_string(), format % args)

    try:
        server = http.server.ThreadingHTTPServer((host, port), Handler)
    except BaseException:
        si.close()
        raise
    server.daemon_threads = True
    return server


def serve_dashboard(
    home: str | os.PathLike[str] | None, *, host: str = "127.0.0.1", port: int = 8765
) -> None:
    """Serve until interrupted."""
    server = make_server(home, host=host, port=port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
