"""Headless Chromium (Debian's `chromium` package) for the tests that look at a page as a
visitor does: the DOM after the page loaded, and a screenshot read back pixel by pixel.

Where chromium is missing the tests are skipped with the reason, unless LABBOT_REQUIRE_CHROMIUM
is set (CI's .ci/run sets it after installing the package), when they fail instead.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
TIMEOUT = 60


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "Debian's chromium package is not installed (.ci/run installs it)"
    if os.environ.get("LABBOT_REQUIRE_CHROMIUM"):
        pytest.fail(reason + ", and LABBOT_REQUIRE_CHROMIUM is set")
    pytest.skip(reason)


def _run(url: str, *extra: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="labbot-chromium-") as profile:
        return subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, url],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=True,
        )


def dump_dom(url: str) -> str:
    """The DOM as the browser built it, serialised."""
    return _run(url, "--dump-dom").stdout


def screenshot(url: str, path: Path, size: tuple[int, int] = (1000, 2400)) -> Path:
    _run(url, f"--screenshot={path}", f"--window-size={size[0]},{size[1]}")
    return path


def pixels(path: Path) -> list[list[tuple[int, int, int]]]:
    """RGB rows of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, idat, width = 8, b"", 0
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        chunk = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and colour in (2, 6), "only 8-bit RGB(A)"
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        offset += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            line[i] = (line[i] + _predict(kind, left, up, corner)) & 0xFF
        rows.append(line)
        previous = line
    return [[tuple(row[x * channels : x * channels + 3]) for x in range(width)] for row in rows]


def _predict(kind: int, left: int, up: int, corner: int) -> int:
    if kind == 0:
        return 0
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:
        return (left + up) // 2
    estimate = left + up - corner
    best = min((abs(estimate - left), 0), (abs(estimate - up), 1), (abs(estimate - corner), 2))
    return (left, up, corner)[best[1]]
