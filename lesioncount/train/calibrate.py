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
- For the int8 twin (``lesioncount calibrate --int8``), on the same held-out faces: quantisation nudges
  every heatmap a little, so the same threshold would count a few percent more or fewer. The twin gets
  the acne threshold at which its total count on the held-out faces matches the fp32 model's, written
  into its ONNX metadata (the weights are untouched).
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
#: How far (and in what steps) the int8 twin's acne threshold may move from the fp32 model's.
INT8_SEARCH, INT8_STEP = 0.05, 0.0005


def match_threshold(scores: Sequence[np.ndarray], target_total: int, centre: float) -> float:
    """The threshold near ``centre`` at which ``scores`` (peak scores per photo) total ``target_total``
    peaks; of equally close totals the threshold nearest ``centre`` wins."""
    grid = np.round(np.arange(max(INT8_STEP, centre - INT8_SEARCH), centre + INT8_SEARCH + 1e-9, INT8_STEP), 4)
    flat = np.concatenate([np.asarray(s, float) for s in scores]) if scores else np.zeros(0)
    return float(min(grid, key=lambda t: (abs(int((flat >= t).sum()) - target_total), abs(t - centre))))


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
    flip_average: bool = False,
    heat_sigma: float = 0.0,
    int8: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Choose the acne threshold through the counting pipeline and write it into ``checkpoint``.

    Args:
        flip_average: count with test-time flip averaging; recorded in the checkpoint, and so in the
            exported model's contract, beside the thresholds chosen for it.
        heat_sigma: count with the heatmaps smoothed by this sigma (output pixels); recorded likewise.
        int8: the checkpoint's int8 twin (from ``lesioncount export --int8``); when given, its acne
            threshold is matched to the fp32 count on the same faces and written into its metadata.

    Returns:
        ``{"threshold", "hayashi_acc", "count_r", "held_out_photos", "table"}``, and with ``int8`` also
        ``"int8_threshold"``, ``"fp32_total"`` and ``"int8_total"`` (held-out acne counts).
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
    total = len(held_out) * (2 if int8 else 1)

    def acne_scores(model: Path, low: float, done: int) -> list[np.ndarray]:
        counter = LesionCounter(model, threads=threads, flip_average=flip_average, heat_sigma=heat_sigma)
        # Only the acne classes go low: a scar peak at a low threshold would take over the place of an
        # acne peak (one class per place), which at the real thresholds it would not.
        counter.thresholds |= dict.fromkeys(ACNE_CLASSES, low)
        out = []
        for k, item in enumerate(held_out):
            result = counter.count(item.path)
            out.append(np.array([les.score for les in result.lesions if les.cls in ACNE_CLASSES]))
            if progress:
                progress(done + k + 1, total)
        return out

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "m.onnx"
        export_onnx(checkpoint, onnx_path)
        scores = acne_scores(onnx_path, float(min(grid)), 0)
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
    state["flip_average"] = flip_average  # the thresholds hold for this way of running the model
    state["heat_sigma"] = float(heat_sigma)
    state["calibration"] = {"held_out_photos": len(held_out), "hayashi_acc": acc, "count_r": r, "via": "pipeline"}
    with atomic_path(checkpoint) as tmp_path:  # a kill never leaves a half-written checkpoint
        torch.save(state, tmp_path)
    res = {"threshold": best, "hayashi_acc": acc, "count_r": r, "held_out_photos": len(held_out), "table": table}
    if int8:
        fp32_total = sum(int((s >= best).sum()) for s in scores)
        scores8 = acne_scores(Path(int8), max(INT8_STEP, best - INT8_SEARCH), len(held_out))
        t8 = match_threshold(scores8, fp32_total, best)
        set_acne_threshold(int8, t8)
        int8_total = sum(int((s >= t8).sum()) for s in scores8)
        res |= {"int8_threshold": t8, "fp32_total": fp32_total, "int8_total": int8_total}
    return res


def set_acne_threshold(onnx_path: str | Path, threshold: float) -> None:
    """Rewrite the acne classes' threshold in an exported model's contract (atomically; weights untouched)."""
    import onnx

    from lesioncount.train.export import update_contract
    from lesioncount.types import ModelSpec

    spec = ModelSpec.from_metadata({p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props})
    update_contract(onnx_path, thresholds=spec.thresholds | dict.fromkeys(ACNE_CLASSES, threshold))
