"""Re-calibrate the acne threshold of a trained model through the whole counting pipeline.

Training calibrates its thresholds on the network's raw output over whole held-out photos; the counting
core also finds the face, rescales and counts only on and near the skin, which changes the counts. This
script exports the checkpoint to a temporary ONNX model and counts the held-out faces of the training
folder (the same split as training: by source face) once through ``LesionCounter`` at the lowest
candidate threshold; it recounts at every candidate from the peaks' scores, picks the one with the best
Hayashi-grade accuracy (count correlation breaks ties) and writes it into the checkpoint (atomically),
ready for ``lesioncount export``. The scar threshold is kept.

    python scripts/calibrate_pipeline.py runs/unet24/final.pt
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from rich.progress import track

from lesioncount.config import TrainConfig, from_dict
from lesioncount.count import hayashi_grade
from lesioncount.data import hayashi_grade_from_name
from lesioncount.io import atomic_path
from lesioncount.pipeline import LesionCounter
from lesioncount.train.dataset import load_items, split_by_source
from lesioncount.train.export import export_onnx
from lesioncount.types import ACNE_CLASSES


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="final.pt from `lesioncount train`")
    ap.add_argument("--grid", default="0.05:0.5:0.01", help="start:stop:step of the acne thresholds tried")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    cfg = from_dict(TrainConfig, state["config"])
    _, held_out = split_by_source(load_items(cfg.data_dir, cfg.class_map), cfg.val_fraction, cfg.seed)
    start, stop, step = (float(v) for v in args.grid.split(":"))
    grid = np.round(np.arange(start, stop + 1e-9, step), 4)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "m.onnx"
        export_onnx(args.checkpoint, onnx_path)
        # One pass at the lowest threshold: a peak's score does not depend on the threshold, so the
        # count at any higher threshold is the number of these peaks scoring at least that much.
        counter = LesionCounter(onnx_path, threads=args.threads)
        # Only the acne classes go low: a scar peak at a low threshold would take over the place of an
        # acne peak (one class per place), which at the real thresholds it would not.
        counter.thresholds |= dict.fromkeys(ACNE_CLASSES, float(grid[0]))
        scores = []
        for item in track(held_out, description="held-out photos"):
            r = counter.count(item.path)
            scores.append(np.array([les.score for les in r.lesions if les.cls in ACNE_CLASSES]))
    ref = np.array([len(item.lesions) for item in held_out])
    grades = [hayashi_grade_from_name(item.path) for item in held_out]
    rows = []
    for t in grid:
        n = np.array([int((s >= t).sum()) for s in scores])
        acc = float(np.mean([hayashi_grade(int(a)) == g for a, g in zip(n, grades, strict=True)]))
        r = float(np.corrcoef(n, ref)[0, 1]) if n.std() > 0 else 0.0
        rows.append((acc, r, float(t)))
        print(f"threshold {t:.3f}: Hayashi accuracy {acc:.3f}, count r {r:.3f}, mean count {n.mean():.1f}")
    acc, r, best = max(rows)
    thresholds = dict(state["thresholds"])
    for c in ACNE_CLASSES:
        thresholds[c] = best
    state["thresholds"] = thresholds
    state["calibration"] = {"held_out_photos": len(held_out), "hayashi_acc": acc, "count_r": r, "via": "pipeline"}
    with atomic_path(args.checkpoint) as tmp_path:  # a kill never leaves a half-written checkpoint
        torch.save(state, tmp_path)
    print(f"chose {best} on {len(held_out)} held-out photos (Hayashi {acc:.3f}, r {r:.3f}); wrote {args.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
