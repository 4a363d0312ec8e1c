"""E-divisive means: hierarchical change-point detection by energy statistics (Matteson & James, 2014,
"A Nonparametric Approach for Multiple Change Point Analysis of Multivariate Data", JASA 109:505).

The series is one value per *night* (the mean over that night's replicates, e.g. seeds). For a segment
``x[s:e]`` and a split ``tau`` (X = ``x[s:tau]``, n points; Y = ``x[tau:kappa]``, m points) the statistic is::

    Q(tau, kappa) = 2/(m+n) * sum_ij |X_i - Y_j|^a
                    - 2m/((m+n)(n-1)) * sum_{i<k} |X_i - X_k|^a
                    - 2n/((m+n)(m-1)) * sum_{j<k} |Y_j - Y_k|^a       (a within term is 0 for 1 point)

i.e. ``mn/(m+n)`` times the energy distance of X and Y, with exponent ``a`` in (0, 2). The published
algorithm also maximizes over the end ``kappa`` of Y (``kappa_search=True``, the form Apache Otava's
``PairDistanceCalculator`` implements, checked against it in the tests); the default fixes ``kappa`` at the
segment's end, a two-sample split that is more powerful for the step at the end of a nightly series (see
``benchmarks/bench_detection.py`` for both). Binary segmentation: the segment whose best split has the
largest Q is split if the split is significant, then the search repeats on all segments.

Significance (Matteson & James's permutation test): the replicates are permuted *within each current
segment* and the whole search (best split of every segment, maximum over segments) is rerun on the
permuted data; ``p = (1 + #{Q_perm >= Q_obs}) / (1 + R)``. Permuting replicates across nights assumes they
are exchangeable under no change (no shared night effect); ``permute="nights"`` permutes whole nights
instead (valid with night effects, but a step in the last nights cannot reach a small p). Permutations run
in batches and stop early once the p value cannot reach ``max_pvalue`` (Besag & Clifford's sequential
p value, ``(1 + hits) / (1 + done)``). Deterministic for a given ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel

from genbench_tasks.errors import GenbenchError

__all__ = ["ChangePoint", "best_split", "e_divisive", "qhat"]

_BATCH = 200


class ChangePoint(BaseModel):
    """A significant split: the first night of the new segment (index into the series)."""

    index: int
    qhat: float
    p_value: float
    permutations: int


def qhat(x: np.ndarray, *, alpha: float = 1.0, kappa_search: bool = False) -> np.ndarray:
    """Q for every split of each row of ``x`` (shape ``(..., N)``).

    ``kappa_search``: ``Q[..., tau, kappa]`` (shape ``(..., N+1, N+1)``), else ``Q[..., tau]`` with
    ``kappa = N`` (shape ``(..., N+1)``); invalid entries are ``-inf``.
    """
    if not 0 < alpha < 2:
        raise GenbenchError(f"energy exponent must be in (0, 2), got {alpha}")
    x = np.asarray(x, dtype=np.float64)
    n_pts = x.shape[-1]
    d = np.abs(x[..., :, None] - x[..., None, :])
    if alpha != 1.0:
        d = d**alpha
    c = np.zeros((*x.shape[:-1], n_pts + 1, n_pts + 1))
    c[..., 1:, 1:] = d.cumsum(-2).cumsum(-1)  # c[a, b] = sum of d[:a, :b]
    t = np.arange(n_pts + 1)
    if kappa_search:
        tau, kap = np.meshgrid(t, t, indexing="ij")
    else:
        tau, kap = t, np.full_like(t, n_pts)

    def block(a1, a2, b1, b2):
        return c[..., a2, b2] - c[..., a1, b2] - c[..., a2, b1] + c[..., a1, b1]

    zero = np.zeros_like(tau)
    between = block(zero, tau, tau, kap)
    within_x = block(zero, tau, zero, tau) / 2.0
    within_y = block(tau, kap, tau, kap) / 2.0
    n, m = tau.astype(np.float64), (kap - tau).astype(np.float64)
    valid = (tau >= 1) & (m >= 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cb = np.where(valid, 2.0 / (n + m), 0.0)
        cx = np.where(valid & (n > 1), 2.0 * m / ((n + m) * (n - 1)), 0.0)
        cy = np.where(valid & (m > 1), 2.0 * n / ((n + m) * (m - 1)), 0.0)
    q = cb * between - cx * within_x - cy * within_y
    return np.where(valid, q, -np.inf)


def best_split(
    x: np.ndarray, *, alpha: float = 1.0, kappa_search: bool = False, min_size: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(max Q, split index tau) per row of ``x`` (``(..., N)``); both sides keep >= ``min_size`` points.
    Rows too short to split give ``(-inf, -1)``."""
    q = qhat(x, alpha=alpha, kappa_search=kappa_search)
    n_pts = x.shape[-1]
    t = np.arange(n_pts + 1)
    ok = (t >= min_size) & (t <= n_pts - min_size)
    if kappa_search:
        kap = t[None, :]
        ok = ok[:, None] & (kap - t[:, None] >= min_size)
    q = np.where(ok, q, -np.inf)
    flat = q.reshape(*q.shape[: q.ndim - (2 if kappa_search else 1)], -1)
    k = flat.argmax(-1)
    best = np.take_along_axis(flat, k[..., None], -1)[..., 0]
    tau = k // (n_pts + 1) if kappa_search else k
    return best, np.where(np.isfinite(best), tau, -1)


def _segments_max(
    means: np.ndarray, bounds: list[tuple[int, int]], **kw
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best split over all segments, per row of ``means`` (``(R, N)``): (Q, absolute tau, segment #)."""
    rows = means.shape[0]
    best = np.full(rows, -np.inf)
    tau = np.full(rows, -1)
    seg = np.full(rows, -1)
    for i, (s, e) in enumerate(bounds):
        if e - s < 2 * kw["min_size"]:
            continue
        q, t = best_split(means[:, s:e], **kw)
        better = q > best
        best, tau, seg = np.where(better, q, best), np.where(better, t + s, tau), np.where(better, i, seg)
    return best, tau, seg


def e_divisive(
    nights: Sequence[Sequence[float]],
    *,
    alpha: float = 1.0,
    max_pvalue: float = 0.005,
    permutations: int = 999,
    min_size: int = 1,
    kappa_search: bool = False,
    permute: Literal["replicates", "nights"] = "replicates",
    max_change_points: int | None = None,
    seed: int = 0,
) -> list[ChangePoint]:
    """Significant change points of a series of nights, each a list of replicate values (module docstring).

    Returns change points sorted by index; ``index`` is the first night after the change.
    """
    groups = [np.asarray(v, dtype=np.float64) for v in nights]
    if any(len(g) == 0 or not np.all(np.isfinite(g)) for g in groups):
        raise GenbenchError("every night needs at least one finite value")
    n_nights = len(groups)
    counts = np.array([len(g) for g in groups])
    flat = np.concatenate(groups) if groups else np.zeros(0)
    starts = np.concatenate([[0], np.cumsum(counts)])
    means = np.array([g.mean() for g in groups])[None, :]
    rng = np.random.default_rng(seed)
    kw = {"alpha": alpha, "kappa_search": kappa_search, "min_size": min_size}
    found: list[ChangePoint] = []
    limit = max_change_points if max_change_points is not None else n_nights
    while len(found) < limit:
        cuts = [0, *sorted(c.index for c in found), n_nights]
        bounds = list(zip(cuts[:-1], cuts[1:], strict=True))
        q_obs, tau, _ = _segments_max(means, bounds, **kw)
        if not np.isfinite(q_obs[0]):
            break
        hits, done = 0, 0
        max_hits = max_pvalue * (permutations + 1) - 1  # more hits than this: p > max_pvalue
        while done < permutations:
            size = min(_BATCH if done else 50, permutations - done)
            perm_means = _permuted_means(flat, starts, counts, bounds, size, permute, means[0], rng)
            q_perm, _, _ = _segments_max(perm_means, bounds, **kw)
            hits += int(np.sum(q_perm >= q_obs[0] - 1e-12 * abs(q_obs[0])))
            done += size
            if hits > max_hits:
                break
        p = (1 + hits) / (1 + done)
        if p > max_pvalue:
            break
        found.append(ChangePoint(index=int(tau[0]), qhat=float(q_obs[0]), p_value=p, permutations=done))
    return sorted(found, key=lambda c: c.index)


def _permuted_means(
    flat: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    bounds: list[tuple[int, int]],
    size: int,
    permute: str,
    means: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """``size`` permuted copies of the night means, permuting within each segment."""
    if permute == "nights":
        out = np.broadcast_to(means, (size, len(means))).copy()
        for s, e in bounds:
            out[:, s:e] = rng.permuted(out[:, s:e], axis=1)
        return out
    if permute != "replicates":
        raise GenbenchError(f"permute must be 'replicates' or 'nights', got {permute!r}")
    data = np.broadcast_to(flat, (size, len(flat))).copy()
    for s, e in bounds:
        a, b = starts[s], starts[e]
        data[:, a:b] = rng.permuted(data[:, a:b], axis=1)
    return np.add.reduceat(data, starts[:-1], axis=1) / counts
