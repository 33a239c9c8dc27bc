"""Re-calibrate the acne threshold of a trained model through the whole counting pipeline.

Training calibrates its thresholds on the network's raw output over whole held-out photos; the counting
core also finds the face, rescales and counts only on and near the skin, which changes the counts. This
script exports the checkpoint to a temporary ONNX model, counts the held-out faces of the training folder
(the same split as training: by source face) with each candidate threshold through
``LesionCounter``, picks the one with the best Hayashi-grade accuracy (count correlation breaks ties)
and writes it into the checkpoint, ready for ``lesioncount export``. The scar threshold is kept.

    python scripts/calibrate_pipeline.py runs/unet16/final.pt
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from lesioncount.config import TrainConfig, from_dict
from lesioncount.count import hayashi_grade
from lesioncount.data import hayashi_grade_from_name
from lesioncount.pipeline import LesionCounter
from lesioncount.train.dataset import load_items, split_by_source
from lesioncount.train.export import export_onnx


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="final.pt from `lesioncount train`")
    ap.add_argument("--grid", default="0.075,0.1,0.125,0.15,0.175,0.2,0.225,0.25")
    args = ap.parse_args()
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    cfg = from_dict(TrainConfig, state["config"])
    _, held_out = split_by_source(load_items(cfg.data_dir, cfg.class_map), cfg.val_fraction, cfg.seed)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "m.onnx"
        export_onnx(args.checkpoint, onnx_path)
        rows = []
        for t in (float(v) for v in args.grid.split(",")):
            counter = LesionCounter(onnx_path, threshold=t)
            n = np.array([counter.count(item.path).counts["total_acne"] for item in held_out])
            ref = np.array([len(item.lesions) for item in held_out])
            grades = [hayashi_grade_from_name(item.path) for item in held_out]
            acc = float(np.mean([hayashi_grade(int(a)) == g for a, g in zip(n, grades, strict=True)]))
            r = float(np.corrcoef(n, ref)[0, 1])
            rows.append((acc, r, t))
            print(f"threshold {t:.3f}: Hayashi accuracy {acc:.3f}, count r {r:.3f}, mean count {n.mean():.1f}")
    acc, r, best = max(rows)
    thresholds = dict(state["thresholds"])
    for c in ("inflammatory", "comedone"):
        thresholds[c] = best
    state["thresholds"] = thresholds
    state["calibration"] = {"held_out_photos": len(held_out), "hayashi_acc": acc, "count_r": r, "via": "pipeline"}
    torch.save(state, args.checkpoint)
    print(f"chose {best} on {len(held_out)} held-out photos (Hayashi {acc:.3f}, r {r:.3f}); wrote {args.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
