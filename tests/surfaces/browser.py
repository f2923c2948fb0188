"""Headless Debian chromium for page tests: console messages, DOM, screenshot, every request.

The page under test is served by a local HTTP server that is also chromium's proxy, so every
request the page makes — to localhost or to the internet — reaches that server and is logged.
"""

from __future__ import annotations

import http.server
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.plasticity._browser import chromium_path, png_colours

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=8000",
    "--window-size=1280,2400",
]


def chromium() -> str | None:
    return chromium_path()


#: Chromium's own background services (network time, account checks, component updates):
#: requests to them come from the browser, not from the page under test.
BROWSER_HOSTS = ("google.com", "googleapis.com", "gstatic.com", "gvt1.com")


@dataclass
class PageRun:
    dom: str
    console: list[str]
    requests: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    def page_requests(self) -> list[str]:
        """Requests other than the browser's own background traffic."""

        def host(r: str) -> str:
            r = r.split("://", 1)[-1]
            return r.split("/", 1)[0].split(":", 1)[0]

        return [
            r
            for r in self.requests
            if not any(host(r) == h or host(r).endswith("." + h) for h in BROWSER_HOSTS)
        ]


def serve_and_render(page: Callable[[], bytes], out_dir: Path) -> PageRun:
    """Serve ``page()`` at ``/`` (and log every other request), render it twice in chromium:
    once for the DOM after scripts ran, once for a screenshot."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            if self.path.endswith(("/", "/index.html")) and "127.0.0.1" in (
                self.headers.get("Host") or ""
            ):
                body = page()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        do_CONNECT = do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    exe = chromium()
    assert exe is not None
    url = f"http://127.0.0.1:{port}/"
    proxy = [f"--proxy-server=http://127.0.0.1:{port}", "--proxy-bypass-list=<-loopback>"]
    shot = out_dir / "page.png"
    try:
        with tempfile.TemporaryDirectory() as profile:
            dump = subprocess.run(
                [exe, *FLAGS, *proxy, f"--user-data-dir={profile}", "--dump-dom", url],
                capture_output=True,
                text=True,
                timeout=180,
            )
        with tempfile.TemporaryDirectory() as profile:
            snap = subprocess.run(
                [exe, *FLAGS, *proxy, f"--user-data-dir={profile}", f"--screenshot={shot}", url],
                capture_output=True,
                text=True,
                timeout=180,
            )
    finally:
        server.shutdown()
        server.server_close()
    console = [line for line in (dump.stderr + snap.stderr).splitlines() if ":CONSOLE" in line]
    return PageRun(dump.stdout, console, requests, shot if shot.exists() else None)


def png_colour_count(path: Path) -> int:
    """Distinct colours of a PNG screenshot (decoded by the plasticity tests' PNG reader)."""
    return png_colours(path.read_bytes())[1]
