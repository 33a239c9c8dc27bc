"""Choosing the operating thresholds on held-out training faces (never on the photos figures are reported on).

One rule for both places that calibrate: the acne classes share one threshold, the one with the best
Hayashi-grade accuracy from the total acne count (count correlation breaks ties), because ACNE04's class
names are noisy but its grades are not.

- During training (``train.loop.calibrate``), on the network's raw output over whole held-out photos.
- After training (``lesioncount calibrate``, ``calibrate_checkpoint``), through the whole counting pipeline
  (face, working scale, skin), which changes the counts: the checkpoint is exported to a temporary ONNX
  model, each held-out face is counted once at the lowest candidate threshold, and the count at every
  higher candidate is the number of its peaks scoring at least that much. The chosen threshold is written
  into the checkpoint atomically, ready for ``lesioncount export``. The scar threshold is kept.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lesioncount.count import hayashi_grade
from lesioncount.io import atomic_path
from lesioncount.train.checkpoint import load_checkpoint_file
from lesioncount.types import ACNE_CLASSES

#: Acne thresholds tried after training, through the pipeline.
PIPELINE_GRID = tuple(float(t) for t in np.round(np.arange(0.05, 0.5 + 1e-9, 0.01), 4))


def choose_acne_threshold(
    counts_at: Callable[[float], Sequence[int]], reference: Sequence[int], grades: Sequence[int], grid: Sequence[float]
) -> tuple[float, float, float, list[tuple[float, float, float]]]:
    """The threshold with the best Hayashi-grade accuracy (count r breaks ties).

    Args:
        counts_at: the acne count of every held-out photo at a threshold.
        reference: the labelled acne count of each photo (for the correlation).
        grades: the Hayashi grade of each photo (from its file name).
        grid: the thresholds to try.

    Returns:
        ``(accuracy, r, threshold, table)``, the table holding ``(accuracy, r, threshold)`` per candidate.
    """
    ref = np.asarray(reference, float)
    table = []
    for t in grid:
        n = np.asarray(counts_at(float(t)), float)
        acc = float(np.mean([hayashi_grade(int(a)) == g for a, g in zip(n, grades, strict=True)])) if len(n) else 0.0
        r = float(np.corrcoef(n, ref)[0, 1]) if n.std() > 0 and ref.std() > 0 else 0.0
        table.append((acc, r, float(t)))
    acc, r, best = max(table)
    return acc, r, best, table


def calibrate_checkpoint(
    checkpoint: str | Path,
    *,
    grid: Sequence[float] = PIPELINE_GRID,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Choose the acne threshold through the counting pipeline and write it into ``checkpoint``.

    Returns:
        ``{"threshold", "hayashi_acc", "count_r", "held_out_photos", "table"}``.
    """
    from lesioncount.config import TrainConfig, from_dict
    from lesioncount.data import hayashi_grade_from_name
    from lesioncount.pipeline import LesionCounter
    from lesioncount.train.dataset import load_items, split_by_source
    from lesioncount.train.export import export_onnx

    state = load_checkpoint_file(checkpoint)
    cfg = from_dict(TrainConfig, state["config"])
    _, held_out = split_by_source(load_items(cfg.data_dir, cfg.class_map), cfg.val_fraction, cfg.seed)
    if not held_out:
        raise ValueError(f"{cfg.data_dir}: no held-out faces to calibrate on")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "m.onnx"
        export_onnx(checkpoint, onnx_path)
        counter = LesionCounter(onnx_path, threads=threads)
        # Only the acne classes go low: a scar peak at a low threshold would take over the place of an
        # acne peak (one class per place), which at the real thresholds it would not.
        counter.thresholds |= dict.fromkeys(ACNE_CLASSES, float(min(grid)))
        scores = []
        for k, item in enumerate(held_out):
            result = counter.count(item.path)
            scores.append(np.array([les.score for les in result.lesions if les.cls in ACNE_CLASSES]))
            if progress:
                progress(k + 1, len(held_out))
    grades = [hayashi_grade_from_name(item.path) for item in held_out]
    if any(g is None for g in grades):
        raise ValueError(f"{cfg.data_dir}: every held-out photo needs a grade in its file name (levelK_N)")
    acc, r, best, table = choose_acne_threshold(
        lambda t: [int((s >= t).sum()) for s in scores],
        [len(item.lesions) for item in held_out],
        [int(g) for g in grades if g is not None],
        grid,
    )
    state["thresholds"] = dict(state["thresholds"]) | dict.fromkeys(ACNE_CLASSES, best)
    state["calibration"] = {"held_out_photos": len(held_out), "hayashi_acc": acc, "count_r": r, "via": "pipeline"}
    with atomic_path(checkpoint) as tmp_path:  # a kill never leaves a half-written checkpoint
        torch.save(state, tmp_path)
    return {"threshold": best, "hayashi_acc": acc, "count_r": r, "held_out_photos": len(held_out), "table": table}
