"""Views of large runs (one-shot scale: 10^5 trials): past `EXACT_POINTS` points a view
draws its dominated points aggregated, as a density (a 2-D heatmap of counts, or in 3-D
one marker per occupied voxel, coloured by count), while every Pareto-front point and
the selection ring stay exact. A browser keeps up with a few thousand markers in SVG
and a few tens of thousands in WebGL; a 100,000-point trace would also make the page
tens of megabytes.

`Grid` bins every point of a view on one grid (log-spaced on log axes), so the runs of
one page share their cells."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nasmt.report.style import esc

EXACT_POINTS = 20_000  # a view with more points than this draws its dominated points as a density
BINS_2D = 120  # cells per axis of a 2-D density
BINS_3D = 24  # voxels per axis of a 3-D density
SAMPLE_SEED = 0  # views that sample instead (scatter matrices) use a fixed seed: stable across refreshes


class Grid(NamedTuple):
    edges: list[np.ndarray]  # per axis, bin edges in plotted units (log10 on log axes)
    logs: list[bool]

    def centers(self, j: int) -> np.ndarray:
        e = self.edges[j]
        c = (e[:-1] + e[1:]) / 2
        return 10.0 ** c if self.logs[j] else c

    def counts(self, V: np.ndarray) -> np.ndarray:
        """Points (n, dims) counted per cell (rows with a non-finite value are left out)."""
        P = np.column_stack([self._unit(V[:, j], j) for j in range(len(self.edges))]) if len(V) else V
        P = P[np.isfinite(P).all(axis=1)] if len(P) else P
        h, _ = np.histogramdd(P.reshape(len(P), len(self.edges)), bins=self.edges)
        return h

    def _unit(self, v: np.ndarray, j: int) -> np.ndarray:
        v = np.asarray(v, float)
        if not self.logs[j]:
            return v
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)


def make_grid(V: np.ndarray, logs: list[bool], bins: int) -> Grid:
    """A grid spanning the finite values of every column of V (n, dims)."""
    edges = []
    for j, lg in enumerate(logs):
        v = np.asarray(V[:, j], float)
        v = v[np.isfinite(v) & (v > 0)] if lg else v[np.isfinite(v)]
        if lg:
            v = np.log10(v)
        lo, hi = (float(v.min()), float(v.max())) if len(v) else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        pad = (hi - lo) * 1e-9
        edges.append(np.linspace(lo - pad, hi + pad, bins + 1))
    return Grid(edges, list(logs))


def density_2d(go, grid: Grid, V: np.ndarray, color: str, name: str, legendgroup: str, what: str = "trials"):
    """A heatmap of how many of the points V (n, 2) fall in each cell (empty cells clear)."""
    h = grid.counts(V).T  # rows: y, columns: x
    z = np.where(h > 0, np.log10(np.maximum(h, 1)) + 1, np.nan)
    text = h.astype(int)
    return go.Heatmap(
        x=grid.centers(0), y=grid.centers(1), z=z, text=text, zmin=0, showscale=False, hoverongaps=False,
        colorscale=[[0.0, "rgba(255,255,255,0)"], [0.001, _rgba(color, 0.18)], [1.0, _rgba(color, 0.9)]],
        name=name, legendgroup=legendgroup, showlegend=True,
        hovertemplate=f"%{{text}} {esc(what)} in this cell<extra>{name}</extra>",
    )


def density_3d(go, grid: Grid, V: np.ndarray, color: str, name: str, legendgroup: str, what: str = "trials"):
    """One marker per occupied voxel of the points V (n, 3), its colour the count (log)."""
    h = grid.counts(V)
    idx = np.argwhere(h > 0)
    n = h[tuple(idx.T)] if len(idx) else np.zeros(0)
    xyz = [grid.centers(j)[idx[:, j]] if len(idx) else np.zeros(0) for j in range(3)]
    return go.Scatter3d(
        x=xyz[0], y=xyz[1], z=xyz[2], mode="markers", name=name, legendgroup=legendgroup, text=n.astype(int),
        marker=dict(size=3, opacity=0.35, color=np.log10(n + 1) if len(n) else n,
                    colorscale=[[0.0, _rgba(color, 0.25)], [1.0, _rgba(color, 1.0)]], showscale=False),
        hovertemplate=f"%{{text}} {esc(what)} near here<extra>{name}</extra>",
    )


def sample(idx: np.ndarray, k: int) -> np.ndarray:
    """A seeded random sample of k of the indices idx (all of them when k >= len), in order."""
    if len(idx) <= k:
        return idx
    rng = np.random.default_rng(SAMPLE_SEED)
    return np.sort(rng.choice(idx, size=k, replace=False))


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
