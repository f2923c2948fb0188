"""``selfimprove serve``: the dashboard, live and read-only, on one local port.

The standard library's HTTP server is enough: one page, rendered afresh per request from the
store, GET only. With ``metrics=True`` the same server also answers ``/metrics`` in the
Prometheus exposition format, read from the store at each scrape
(:mod:`selfimprove.surfaces.report.metrics`; needs the ``metrics`` extra).
"""

from __future__ import annotations

import http.server
import logging
import os
from collections.abc import Callable
from typing import Any

from selfimprove.errors import ConfigError
from selfimprove.loop.improver import SelfImprover
from selfimprove.surfaces.report.dashboard import render_dashboard

__all__ = ["DashboardServer", "make_server", "serve_dashboard"]

logger = logging.getLogger(__name__)


class DashboardServer(http.server.ThreadingHTTPServer):
    """The dashboard's HTTP server; :attr:`improver` is the home it reads (closed with it)."""

    improver: SelfImprover

    def server_close(self) -> None:
        super().server_close()
        self.improver.close()


def _metrics_page(si: SelfImprover) -> Callable[[str | None], tuple[bytes, str]]:
    """The ``/metrics`` renderer of ``si``'s ledger: ``(body, content type)`` for an Accept
    header (OpenMetrics when asked for, else the Prometheus text format).

    Raises:
        ConfigError: prometheus-client is not installed.
    """
    try:
        from prometheus_client.exposition import choose_encoder
    except ImportError:
        raise ConfigError(
            "metrics need prometheus-client: pip install 'selfimprove[metrics]'."
        ) from None
    from selfimprove.surfaces.report.metrics import ledger_registry

    registry = ledger_registry(si.store)

    def render(accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept or "")
        return encoder(registry), content_type

    return render


def make_server(
    home: str | os.PathLike[str] | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    metrics: bool = False,
) -> DashboardServer:
    """A server whose ``/`` is the dashboard of ``home`` (other paths: 404; writes: 405).

    The home must exist; it is opened read-only (nothing is created or written there).

    Args:
        home: The home folder.
        host: Interface to bind.
        port: Port (0: any free one; see ``server.server_address``).
        metrics: Also serve ``/metrics`` for Prometheus.

    Raises:
        ConfigError: ``metrics`` without prometheus-client installed.
    """
    si = SelfImprover(home, read_only=True)
    try:
        metrics_page = _metrics_page(si) if metrics else None
    except BaseException:
        si.close()
        raise

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            if metrics_page is not None and path == "/metrics":
                body, content_type = metrics_page(self.headers.get("Accept"))
            elif self.path in ("/", "/index.html"):
                body = render_dashboard(si).encode()
                content_type = "text/html; charset=utf-8"
            else:
                self.send_error(404, "only / is served" + (" and /metrics" if metrics else ""))
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.send_error(405, "the dashboard is read-only")

        do_PUT = do_DELETE = do_POST

        def log_message(self, format: str, *args: Any) -> None:
            logger.info("%s %s", self.address_string(), format % args)

    try:
        server = DashboardServer((host, port), Handler)
    except BaseException:
        si.close()
        raise
    server.improver = si
    server.daemon_threads = True
    return server


def serve_dashboard(
    home: str | os.PathLike[str] | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    metrics: bool = False,
) -> None:
    """Serve until interrupted (see :func:`make_server`)."""
    server = make_server(home, host=host, port=port, metrics=metrics)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
