"""Dense training targets from labelled lesion centres and sizes (numpy only).

Design (see docs/model.md): for each lesion of class k at (x, y) with box w x h (input pixels), the target
heatmap channel k gets a Gaussian peak of 1.0 at the lesion centre on the output grid (1/stride
resolution) with sigma = max(0.7, 0.25 * sqrt(w * h) / stride); overlapping Gaussians take the maximum.
The two size channels hold log(w), log(h) at the centre pixel only, where ``size_weight`` is 1.
A peak of exactly 1.0 marks the centre pixel for the focal loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def make_targets(
    shape_hw: tuple[int, int],
    centres: Sequence[tuple[float, float, float, float, int]],
    n_classes: int,
    stride: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Heatmaps, log-size maps and size weights for one crop.

    Args:
        shape_hw: input crop (height, width) in pixels; both divisible by ``stride``.
        centres: ``(x, y, w, h, class_index)`` per lesion in input pixels.
        n_classes: heatmap channels.
        stride: input pixels per output pixel.

    Returns:
        ``heatmap`` (C, h, w) float32 in [0, 1]; ``log_size`` (2, h, w) float32; ``size_weight`` (h, w) float32.
    """
    oh, ow = shape_hw[0] // stride, shape_hw[1] // stride
    heat = np.zeros((n_classes, oh, ow), np.float32)
    log_size = np.zeros((2, oh, ow), np.float32)
    weight = np.zeros((oh, ow), np.float32)
    for x, y, w, h, k in centres:
        cx, cy = x / stride - 0.5, y / stride - 0.5  # pixel centres: input pixel i covers [i, i+1)
        ix, iy = int(round(cx)), int(round(cy))
        if not (0 <= ix < ow and 0 <= iy < oh):
            continue
        sigma = max(0.7, 0.25 * float(np.sqrt(max(w, 1.0) * max(h, 1.0))) / stride)
        r = int(np.ceil(3 * sigma))
        x0, x1, y0, y1 = max(0, ix - r), min(ow, ix + r + 1), max(0, iy - r), min(oh, iy + r + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        g = np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma * sigma)).astype(np.float32)
        np.maximum(heat[k, y0:y1, x0:x1], g, out=heat[k, y0:y1, x0:x1])
        log_size[:, iy, ix] = (np.log(max(w, 1.0)), np.log(max(h, 1.0)))
        weight[iy, ix] = 1.0
    return heat, log_size, weight


def make_density(
    shape_hw: tuple[int, int],
    centres: Sequence[tuple[float, float, float, float, int]],
    classes: Sequence[int],
    stride: int,
) -> npt.NDArray[np.float32]:
    """A density map (1, h, w) for one crop: each lesion of ``classes`` adds a Gaussian of total mass 1.

    The Gaussian has the heatmap's sigma (``make_targets``) and is centred at the lesion's exact centre;
    its mass is normalised over its whole support before the crop cuts it, so the map's sum over a whole
    photo is its lesion count (density-map counting, as crowd counters and AcneFusionNet do).
    """
    oh, ow = shape_hw[0] // stride, shape_hw[1] // stride
    dens = np.zeros((1, oh, ow), np.float32)
    wanted = set(classes)
    for x, y, w, h, k in centres:
        if k not in wanted:
            continue
        cx, cy = x / stride - 0.5, y / stride - 0.5
        sigma = max(0.7, 0.25 * float(np.sqrt(max(w, 1.0) * max(h, 1.0))) / stride)
        r = int(np.ceil(3 * sigma))
        ix, iy = int(round(cx)), int(round(cy))
        yy, xx = np.mgrid[iy - r : iy + r + 1, ix - r : ix + r + 1]
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma * sigma))
        g /= g.sum()
        inside = (yy >= 0) & (yy < oh) & (xx >= 0) & (xx < ow)
        np.add.at(dens[0], (yy[inside], xx[inside]), g[inside].astype(np.float32))
    return dens
