"""A real headless Chromium driven over the DevTools protocol, and a tiny PNG decoder.

No dependency: Chromium's ``--remote-debugging-pipe`` reads NUL-terminated JSON commands on fd 3
and writes replies and events on fd 4. The page is opened in a fresh target; console calls of
type ``error``/``assert``, uncaught exceptions and ``Log`` entries of level ``error`` (which
include failed network requests) are collected; then a screenshot is taken.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str | None:
    """The Chromium binary, or ``None`` when it is not installed."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


@dataclass
class PageReport:
    """What the browser saw."""

    errors: list[str] = field(default_factory=list)
    png: bytes = b""
    plots: int = 0


class _Pipe:
    def __init__(self, proc: subprocess.Popen[bytes], write_fd: int, read_fd: int) -> None:
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> int:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        return self.next_id

    def _read_one(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        msg: dict[str, Any] = json.loads(raw)
        return msg

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        mid = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_one(deadline)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method} failed: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        for i, ev in enumerate(self.events):
            if ev["method"] == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_one(deadline)
            if msg.get("method") == method:
                return msg
            if "method" in msg:
                self.events.append(msg)


def _high_fd(fd: int) -> int:
    """A copy of ``fd`` numbered >= 10 (so moving it to 3 or 4 cannot clobber the other)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


def open_page(
    path: Path, user_data_dir: Path, *, width: int = 1280, height: int = 1800, settle_s: float = 0.5
) -> PageReport:
    """Load ``path`` in headless Chromium; collect console errors and a screenshot.

    Args:
        path: An HTML file.
        user_data_dir: A fresh profile folder.
        width: Viewport width.
        height: Viewport height.
        settle_s: Seconds the count of drawn plots must stay unchanged after the load event.

    Returns:
        The errors seen, a half-scale PNG screenshot of the viewport, and how many plotly
        plots were drawn.
    """
    binary = chromium_path()
    assert binary is not None
    child_in, parent_out = (_high_fd(fd) for fd in os.pipe())
    parent_in, child_out = (_high_fd(fd) for fd in os.pipe())
    args = [
        binary,
        *FLAGS,
        f"--user-data-dir={user_data_dir}",
        "--remote-debugging-pipe",
        "about:blank",
    ]
    # A small Python trampoline moves our pipe ends to fds 3 and 4, where Chromium expects
    # them, then execs it (dash cannot redirect fds above 9, and preexec_fn runs before
    # subprocess closes the fds it was not asked to keep).
    trampoline = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
        "os.execv(sys.argv[3], sys.argv[3:])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", trampoline, str(child_in), str(child_out), *args],
        pass_fds=(child_in, child_out),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(child_in)
    os.close(child_out)
    pipe = _Pipe(proc, parent_out, parent_in)
    report = PageReport()
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            pipe.call(domain, session=session)
        pipe.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        pipe.call("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        pipe.wait_event("Page.loadEventFired", timeout=60)
        # plotly draws asynchronously: wait until the number of drawn plots stops changing.
        seen, stable_since = -1, time.monotonic()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            res = pipe.call(
                "Runtime.evaluate",
                {"expression": "document.querySelectorAll('.js-plotly-plot .main-svg').length"},
                session=session,
            )
            count = int(res["result"].get("value", 0))
            if count != seen:
                seen, stable_since = count, time.monotonic()
            elif time.monotonic() - stable_since >= settle_s:
                break
            time.sleep(0.1)
        report.plots = seen
        shot = pipe.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "optimizeForSpeed": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 0.5},
            },
            session=session,
            timeout=60,
        )
        report.png = base64.b64decode(shot["data"])
        for ev in pipe.events:
            p = ev.get("params", {})
            if ev["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                report.errors.append(
                    "console: " + " ".join(str(a.get("value", a)) for a in p.get("args", []))
                )
            elif ev["method"] == "Runtime.exceptionThrown":
                details = p.get("exceptionDetails", {})
                report.errors.append(
                    "exception: "
                    + str(details.get("exception", {}).get("description") or details.get("text"))
                )
            elif ev["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                entry = p["entry"]
                report.errors.append(f"log ({entry.get('source')}): {entry.get('text')}")
        with contextlib.suppress(OSError):
            pipe.send("Browser.close")
    finally:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(parent_in)
        os.close(parent_out)
    return report


def _unfilter_slow(ftype: int, line: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    out = line.astype(np.int32)
    up = prev.astype(np.int32)
    for x in range(len(out)):
        a = out[x - bpp] if x >= bpp else 0
        b = up[x]
        c = up[x - bpp] if x >= bpp else 0
        if ftype == 3:
            out[x] = (out[x] + (a + b) // 2) & 0xFF
        else:
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out[x] = (out[x] + pred) & 0xFF
    return out.astype(np.uint8)


def png_colours(png: bytes) -> tuple[int, int, float]:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG and count its colours.

    Returns:
        ``(pixels, distinct colours, share of the most common colour)``.
    """
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = colour_type = 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        body = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour_type in (2, 6) and interlace == 0, (depth, colour_type)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    bpp = 3 if colour_type == 2 else 4
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, stride + 1)
    image = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        ftype, line = int(raw[y, 0]), raw[y, 1:]
        if ftype == 0:
            row = line.copy()
        elif ftype == 1:  # Sub: running sum along each channel, modulo 256
            row = np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif ftype == 2:  # Up
            row = line + prev
        else:  # Average, Paeth: sequential along the row
            row = _unfilter_slow(ftype, line, prev, bpp)
        image[y] = row
        prev = row
    pixels = image.reshape(height, width, bpp)[:, :, :3].reshape(-1, 3)
    packed = pixels[:, 0].astype(np.int64) << 16 | pixels[:, 1].astype(np.int64) << 8 | pixels[:, 2]
    _, counts = np.unique(packed, return_counts=True)
    return len(packed), len(counts), float(counts.max() / len(packed))
