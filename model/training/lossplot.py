"""Loss curves: a plotly figure (saved as HTML) and a dependency-free PNG (numpy + zlib).

The PNG writer draws axes, grid, tick labels (a built-in 3x5 pixel font) and one polyline per
series, so a loss curve can be looked at offline without kaleido, a browser or matplotlib.

Example:
    >>> import tempfile, pathlib
    >>> history = [{"step": s, "train_loss": 4 / (1 + s), "val_loss": None} for s in range(0, 100, 10)]
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "curve.png"
    >>> write_loss_png(history, out)
    >>> out.read_bytes()[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

_FONT = {  # 3x5 glyphs, rows top to bottom
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001010010",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
    "A": "010101111101101", "E": "111100110100111", "I": "111010010010111", "L": "100100100100111",
    "N": "110101101101101", "O": "111101101101111", "P": "110101110100100", "R": "110101110101101",
    "S": "011100010001110", "T": "111010010010010", "V": "101101101101010", " ": "000000000000000",
}  # fmt: skip
SERIES = (("train_loss", "TRAIN", (31, 119, 180)), ("val_loss", "VAL", (255, 127, 14)))


def loss_figure(history: list[dict[str, Any]], title: str = "loss"):
    """A plotly Figure of ``train_loss`` and ``val_loss`` (nats) against ``step``."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for key, label, _ in SERIES:
        pts = [(h["step"], h[key]) for h in history if h.get(key) is not None]
        if pts:
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines", name=label.lower()))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="loss (nats per token)", template="plotly_white")
    return fig


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = max(hi - lo, 1e-9)
    raw = span / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if m * step >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


class _Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.px = np.full((height, width, 3), 255, dtype=np.uint8)

    def dot(self, x: float, y: float, color: tuple[int, int, int], r: int = 1) -> None:
        h, w, _ = self.px.shape
        xi, yi = round(x), round(y)
        self.px[max(yi - r + 1, 0) : min(yi + r, h), max(xi - r + 1, 0) : min(xi + r, w)] = color

    def line(self, x0: float, y0: float, x1: float, y1: float, color: tuple[int, int, int], r: int = 1) -> None:
        n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        for t in np.linspace(0.0, 1.0, n + 1):
            self.dot(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, color, r)

    def text(self, x: int, y: int, s: str, color: tuple[int, int, int] = (0, 0, 0), scale: int = 2) -> None:
        for i, ch in enumerate(s.upper()):
            bits = _FONT.get(ch, _FONT[" "])
            for k, bit in enumerate(bits):
                if bit == "1":
                    cx, cy = x + (i * 4 + k % 3) * scale, y + (k // 3) * scale
                    self.px[cy : cy + scale, cx : cx + scale] = color

    def png(self) -> bytes:
        h, w, _ = self.px.shape
        rows = np.concatenate([np.zeros((h, 1), dtype=np.uint8), self.px.reshape(h, w * 3)], axis=1)

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
            + chunk(b"IEND", b"")
        )


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:.2f}".rstrip("0")


def write_loss_png(history: list[dict[str, Any]], path: str | Path, width: int = 640, height: int = 400) -> None:
    """Draw ``train_loss`` (blue) and ``val_loss`` (orange) against ``step`` into a PNG file."""
    series = [
        (label, color, [(h["step"], h[key]) for h in history if h.get(key) is not None]) for key, label, color in SERIES
    ]
    values = [v for _, _, pts in series for _, v in pts if math.isfinite(v)]
    steps = [s for _, _, pts in series for s, _ in pts]
    if not values:
        raise ValueError("the history has no finite losses to plot")
    left, right, top, bottom = 70, 20, 30, 50
    x_lo, x_hi = min(steps), max(max(steps), min(steps) + 1)
    y_lo, y_hi = min(values), max(values)
    pad = max((y_hi - y_lo) * 0.05, 1e-3)
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def to_px(s: float, v: float) -> tuple[float, float]:
        fx = (s - x_lo) / (x_hi - x_lo)
        fy = (v - y_lo) / (y_hi - y_lo)
        return left + fx * (width - left - right), height - bottom - fy * (height - top - bottom)

    c = _Canvas(width, height)
    for v in _nice_ticks(y_lo, y_hi):
        _, y = to_px(x_lo, v)
        c.line(left, y, width - right, y, (225, 225, 225))
        c.text(8, round(y) - 5, _fmt(v))
    for s in _nice_ticks(x_lo, x_hi):
        x, _ = to_px(s, y_lo)
        c.line(x, top, x, height - bottom, (225, 225, 225))
        label = _fmt(s)
        c.text(min(round(x) - 10, width - 8 * len(label) - 2), height - bottom + 8, label)  # keep it on the canvas
    c.line(left, top, left, height - bottom, (0, 0, 0))
    c.line(left, height - bottom, width - right, height - bottom, (0, 0, 0))
    c.text(width // 2 - 16, height - 18, "STEP")
    c.text(8, 8, "LOSS")
    for i, (label, color, pts) in enumerate(series):
        c.text(width - right - 90, top + 6 + 14 * i, label, color)
        for (s0, v0), (s1, v1) in itertools.pairwise(pts):
            c.line(*to_px(s0, v0), *to_px(s1, v1), color)
        if len(pts) == 1:
            c.dot(*to_px(*pts[0]), color, r=3)
    Path(path).write_bytes(c.png())
