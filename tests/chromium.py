"""Debian's chromium, headless, for tests that look at a page as a person would: a screenshot and the DOM.

`render` measures the page first (a probe copy of it records its height and the boxes of the elements
with an id or a data-chart attribute as `data-rect="x,y,width,height"`), then screenshots the page at
that height, so the PNG holds the whole page. `png_pixels` and `count_colour` read the PNG with the
standard library only (zlib), so tests can count the pixels of a colour without PIL.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import zlib
from pathlib import Path

TIMEOUT_S = 60
MAX_HEIGHT = 16_000

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]

PROBE = """<script>
(function () {
  var de = document.documentElement;
  de.setAttribute("data-page-height", String(Math.ceil(de.scrollHeight)));
  document.querySelectorAll("[id], [data-chart]").forEach(function (el) {
    var r = el.getBoundingClientRect();
    el.setAttribute("data-rect", [r.left + scrollX, r.top + scrollY, r.width, r.height].map(Math.round).join(","));
  });
})();
</script>"""

Pixels = tuple[int, int, list[bytes]]  # width, height, rows of RGB bytes


def chromium_binary() -> str | None:
    """Debian's chromium launcher, if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(args: list[str], profile: Path, what: str) -> str:
    binary = chromium_binary()
    assert binary, "chromium is not installed: run `make setup` (Debian package chromium)"
    cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"chromium ({what}) did not finish within {TIMEOUT_S} s: {' '.join(cmd)}") from None
    noise = re.compile(r"dbus|Fontconfig|unexpected operator")
    errors = "\n".join(line for line in proc.stderr.splitlines() if not noise.search(line))[-3000:]
    assert proc.returncode == 0, f"chromium ({what}) exited {proc.returncode}:\n{errors}"
    return proc.stdout


def render(html: Path, png: Path, width: int = 1400, height: int | None = None) -> str:
    """Screenshot `html` into `png` (the whole page unless `height` is given) and return the laid-out DOM.

    The DOM is the probe copy's: the page's own, plus `data-page-height` on <html> and `data-rect` boxes.
    """
    with tempfile.TemporaryDirectory(prefix="openbell-chromium-") as tmp:
        work = Path(tmp)
        probe = work / "probe.html"
        text = html.read_text(encoding="utf-8")
        cut = text.lower().rfind("</body>")
        probe.write_text(text[:cut] + PROBE + text[cut:] if cut >= 0 else text + PROBE, encoding="utf-8")
        dom = _run([f"--window-size={width},900", "--dump-dom", probe.as_uri()], work / "profile-dom", "dump-dom")
        measured = re.search(r'data-page-height="(\d+)"', dom)
        assert measured, "the probe did not run: no data-page-height in the dumped DOM"
        h = height or min(max(int(measured.group(1)), 200), MAX_HEIGHT)
        png.parent.mkdir(parents=True, exist_ok=True)
        png.unlink(missing_ok=True)
        _run([f"--window-size={width},{h}", f"--screenshot={png}", html.resolve().as_uri()], work / "profile-png",
             "screenshot")
        assert png.is_file() and png.stat().st_size > 0, f"chromium wrote no screenshot at {png}"
    return dom


def rect(dom: str, attr: str, value: str) -> tuple[int, int, int, int]:
    """The box (x, y, width, height) the probe recorded for the element with `attr="value"`."""
    for tag in re.findall(r"<[a-zA-Z][^>]*>", dom):
        if f'{attr}="{value}"' in tag:
            found = re.search(r'data-rect="(-?\d+),(-?\d+),(\d+),(\d+)"', tag)
            assert found, f"no data-rect on the element with {attr}={value!r}"
            x, y, w, h = (int(g) for g in found.groups())
            return x, y, w, h
    raise AssertionError(f"no element with {attr}={value!r} in the DOM")


# ------------------------------------------------------------------------------------------------ PNG


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    out, pos = [], 8
    while pos + 8 <= len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        out.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]))
        pos += 12 + n
    return out


def _add(x: int, y: int, high: int) -> int:
    """Bytewise (x + y) mod 256 of two big-endian byte strings held as ints; `high` is 0x8080…80.

    The low 7 bits of each byte add without reaching the next byte; the top bit is their xor with the carry.
    """
    low = (high >> 7) * 0x7F
    return ((x & low) + (y & low)) ^ ((x ^ y) & high)


def _unfilter(kind: int, line: bytes, prev: bytes, bpp: int, high: int) -> bytes:
    n = len(line)
    if kind == 0:
        return line
    if kind == 2:
        return _add(int.from_bytes(line, "big"), int.from_bytes(prev, "big"), high).to_bytes(n, "big")
    if kind == 1:  # a running sum per channel: a prefix scan in log2(n) whole-row additions
        s, shift = int.from_bytes(line, "big"), bpp
        while shift < n:
            s = _add(s, s >> (8 * shift), high)
            shift *= 2
        return s.to_bytes(n, "big")
    out = bytearray(line)
    if kind == 3:
        for i in range(n):
            out[i] = (out[i] + ((out[i - bpp] if i >= bpp else 0) + prev[i]) // 2) & 0xFF
        return bytes(out)
    if kind == 4:
        for i in range(n):
            a = out[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            out[i] = (out[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        return bytes(out)
    raise AssertionError(f"PNG filter type {kind} is not one of 0-4")


def png_pixels(png: Path) -> Pixels:
    """(width, height, rows): an 8-bit RGB or RGBA, non-interlaced PNG as rows of RGB bytes."""
    chunks = _chunks(png.read_bytes())
    header = next(body for kind, body in chunks if kind == b"IHDR")
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, colour, interlace = header[8], header[9], header[12]
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unsupported PNG: depth {depth}, colour {colour}"
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width * bpp
    high = int.from_bytes(b"\x80" * stride, "big")
    rows, prev = [], bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        prev = _unfilter(raw[start], raw[start + 1:start + 1 + stride], prev, bpp, high)
        rows.append(prev if bpp == 3 else _rgb(prev, width))
    return width, height, rows


def _rgb(rgba: bytes, width: int) -> bytes:
    out = bytearray(width * 3)
    for c in range(3):
        out[c::3] = rgba[c::4]
    return bytes(out)


def _hex(rgb: str | tuple[int, int, int]) -> tuple[int, int, int]:
    if isinstance(rgb, str):
        h = rgb.lstrip("#")
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    return rgb


def count_colour(png: Path | Pixels, rgb: str | tuple[int, int, int], tolerance: int = 12,
                 box: tuple[int, int, int, int] | None = None) -> int:
    """Pixels within `tolerance` (per channel) of `rgb` ("#rrggbb" or a tuple), in `box` (x, y, w, h) if given."""
    width, height, rows = png_pixels(png) if isinstance(png, Path) else png
    x, y, w, h = box or (0, 0, width, height)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        return 0
    pixels = b"".join(row[x0 * 3:x1 * 3] for row in rows[y0:y1])
    mask = -1
    for channel, value in enumerate(_hex(rgb)):
        table = bytes(1 if abs(i - value) <= tolerance else 0 for i in range(256))
        mask &= int.from_bytes(pixels[channel::3].translate(table), "big")
    return mask.bit_count()
