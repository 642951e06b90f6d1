"""The look shared by every view: run colours and marker symbols, fonts, the common
Plotly layout (`style`), and the escaping and rounding of what reaches the page.

No Plotly import here: `style` only calls methods of a figure it is given.
"""

from __future__ import annotations

import html
import math

import numpy as np

from nasmt.run import Objective

# one colour and one marker symbol per overlaid run (cycled past eight runs)
RUN_COLORS = ["#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#1098ad", "#f08c00", "#c2255c", "#5c940d"]
RUN_SYMBOLS = ["circle", "diamond", "square", "triangle-up", "star", "hexagon", "pentagon", "cross"]
FONT = "Inter, -apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
TEXT_COLOR = "#343a40"
MUTED = "#868e96"  # secondary lines and notes (latency pairs, empty-view notes)
STOPPED_COLOR = "#adb5bd"  # stopped trials are drawn grey whatever their run
ALERT = "#f03e3e"  # the selection ring and budget lines
# Above this many points a scatter plot switches to WebGL (scattergl): SVG gets slow
# to draw and to hover past a few thousand markers.
GL_THRESHOLD = 1500
# Numbers reach the page rounded to this many significant digits: more than any view
# shows, and it keeps a 10k-trial payload small.
SIG_DIGITS = 6
# A positive axis spanning more than this ratio (max / min) is drawn logarithmic
# (parameter counts and FLOPs typically span several decades).
LOG_AXIS_RATIO = 50
# Decision names longer than this are shown by their tail (the specific part).
MAX_LABEL = 28


def run_color(i: int) -> str:
    return RUN_COLORS[i % len(RUN_COLORS)]


def run_symbol(i: int) -> str:
    return RUN_SYMBOLS[i % len(RUN_SYMBOLS)]


def esc(s) -> str:
    """Escape text that Plotly renders (it understands a few HTML tags and entities)."""
    return html.escape(str(s), quote=True)


def rounded(v):
    """A finite number as the page gets it (int, or float to `SIG_DIGITS`); else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float):
        return float(f"{v:.{SIG_DIGITS}g}") if math.isfinite(v) else None
    return int(v)


def rounded_many(vals) -> list:
    """`[rounded(v) for v in vals]`, with the floats rounded by numpy (a 100,000-trial
    table rounds a million numbers). Exactly the values `rounded` gives: m / 10^k (or
    m * 10^k) is the double nearest the 6-digit decimal, as `float(f"{v:.6g}")` is, once
    the integer m is right; m is computed in floating point, so the values whose scaled
    fraction is near a tie (.5), and any whose decade or scale is in doubt, are rounded
    by `rounded` itself."""
    vals = list(vals)
    fl = [i for i, v in enumerate(vals) if type(v) is float]
    if len(fl) < 256:
        return [rounded(v) for v in vals]
    out = [v if type(v) is int else None if type(v) is not float else v for v in vals]
    a = np.array([vals[i] for i in fl], dtype=float)
    with np.errstate(all="ignore"):
        mag = np.floor(np.log10(np.abs(a)))
        k = (SIG_DIGITS - 1) - mag  # decimals kept: m = a * 10^k, value = m / 10^k
        up = k >= 0
        scale = 10.0 ** np.abs(k)
        scaled = np.where(up, a * scale, a / scale)
        m = np.rint(scaled)
        r = np.where(up, m / scale, m * scale)
        frac = np.abs(scaled - np.floor(scaled) - 0.5)
        ok = (np.isfinite(r) & (np.abs(k) <= 22) & (frac > 1e-6) & (a != 0)
              & (10.0 ** mag <= np.abs(a)) & (np.abs(a) < 10.0 ** (mag + 1)))
    rl = r.tolist()
    for j in np.flatnonzero(~ok).tolist():
        rl[j] = rounded(a[j].item())
    if len(fl) == len(vals):
        return rl
    for j, i in enumerate(fl):
        out[i] = rl[j]
    return out


def arrow(o: Objective) -> str:
    """Which way is better on an objective's axis."""
    return "↓" if o.direction == "min" else "↑"


def short(name: str) -> str:
    """A decision name cut to `MAX_LABEL` characters, keeping its tail."""
    return name if len(name) <= MAX_LABEL else "…" + name[-(MAX_LABEL - 1):]


def log_axis(a: np.ndarray) -> bool:
    a = a[np.isfinite(a)]
    return len(a) > 1 and a.min() > 0 and a.max() / a.min() > LOG_AXIS_RATIO


def empty_note(text: str) -> dict:
    """A centred grey annotation for a view with nothing to draw."""
    return dict(text=esc(text), xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                font=dict(size=14, color=MUTED))


def empty_figure(text: str):
    """A figure with axes hidden and only `empty_note(text)`."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(annotations=[empty_note(text)], xaxis=dict(visible=False), yaxis=dict(visible=False))
    return style(fig)


def style(fig):
    """The common look of every figure (fonts, white plot area, transparent paper)."""
    fig.update_layout(
        template="plotly_white", font=dict(family=FONT, size=12, color=TEXT_COLOR),
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="#ffffff",
        hoverlabel=dict(font=dict(family=FONT, size=12)),
    )
    return fig
