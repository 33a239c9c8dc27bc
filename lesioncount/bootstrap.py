"""Percentile bootstrap intervals (numpy only), for every part of the package that reports one: evaluation,
calibration (``lesioncount calibrate``) and the scripts that measure the model's goals."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

NAN = float("nan")


def bootstrap_ci(
    n_items: int,
    statistic: Callable[[npt.NDArray[np.intp]], Mapping[str, float]],
    *,
    n_boot: int = 1000,
    rng: np.random.Generator | int | None = None,
    level: float = 0.95,
    groups: Sequence[Hashable] | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals, resampling items (photos) with replacement, or whole groups of them.

    Photos of one face are not independent: a labelled set that holds each face several times (Roboflow's
    ACNE04 export holds most faces three times, two of them augmented copies) measures less than its number
    of photos suggests. With ``groups`` (one key per item, such as its source face) the groups are drawn with
    replacement and each brings all its items, so the interval is as wide as the number of faces warrants.

    Args:
        n_items: number of photos.
        statistic: maps an index array (a resample of ``range(n_items)``) to named statistics.
        n_boot: resamples.
        rng: generator or seed.
        level: interval coverage.
        groups: the group of each item (``n_items`` keys); None: every item its own group.

    Returns:
        name -> ``(low, high)``; nan where fewer than half of the resamples gave a finite value.
    """
    if n_items == 0 or n_boot <= 0:
        return {}
    members: list[npt.NDArray[np.intp]] | None = None
    if groups is not None:
        if len(groups) != n_items:
            raise ValueError(f"groups has {len(groups)} keys for {n_items} items")
        index: dict[Hashable, list[int]] = {}
        for i, g in enumerate(groups):
            index.setdefault(g, []).append(i)
        members = [np.array(v, np.intp) for v in index.values()]
    gen = np.random.default_rng(rng)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        if members is None:
            idx = gen.integers(0, n_items, n_items)
        else:
            idx = np.concatenate([members[k] for k in gen.integers(0, len(members), len(members))])
        for name, v in statistic(idx).items():
            draws.setdefault(name, []).append(float(v))
    a = (1 - level) / 2
    out = {}
    for name, vals in draws.items():
        arr = np.asarray(vals)
        finite = arr[np.isfinite(arr)]
        if len(finite) < n_boot / 2:
            out[name] = (NAN, NAN)
        else:
            lo, hi = np.quantile(finite, [a, 1 - a])
            out[name] = (float(lo), float(hi))
    return out
