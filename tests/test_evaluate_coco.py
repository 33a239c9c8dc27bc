"""The COCO export, and our box AP cross-checked with pycocotools on the same files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lesioncount.data import ImageAnnotation, RefLesion
from lesioncount.evaluate import EvalConfig
from lesioncount.evaluate.run import evaluate_predictions, write_coco_pair
from lesioncount.io import write_json
from lesioncount.types import CountResult, FaceInfo, ImageInfo, Lesion, ModelInfo

pycocotools = pytest.importorskip("pycocotools")


def _dataset(tmp_path: Path, n_images: int = 40, seed: int = 0) -> tuple[list[ImageAnnotation], Path]:
    """Boxes of two classes; predictions: most references found with jitter and a score, plus false ones."""
    rng = np.random.default_rng(seed)
    labels, pred_dir = [], tmp_path / "pred"
    for i in range(n_images):
        refs, preds = [], []
        for _ in range(int(rng.integers(0, 8))):
            cls = ("inflammatory", "comedone")[int(rng.integers(2))]
            w, h = rng.uniform(12, 30, 2)
            x, y = rng.uniform(40, 600, 2)
            refs.append(RefLesion(cls, x, y, (x - w / 2, y - h / 2, w, h), min(w, h) / 2))
            if rng.random() < 0.8:
                dx, dy = rng.normal(0, 2.5, 2)
                s = float(np.clip(rng.normal(0.7, 0.15), 0.05, 0.99))
                preds.append(Lesion(cls, x + dx, y + dy, w * h, (x + dx - w / 2, y + dy - h / 2, w, h), s))
        for _ in range(int(rng.integers(0, 3))):
            x, y = rng.uniform(40, 600, 2)
            s = float(np.clip(rng.normal(0.4, 0.15), 0.05, 0.99))
            cls = ("inflammatory", "comedone")[int(rng.integers(2))]
            preds.append(Lesion(cls, x, y, 400, (x - 10, y - 10, 20, 20), s))
        labels.append(ImageAnnotation(f"{i}.jpg", 640, 640, tuple(refs)))
        res = CountResult(
            ImageInfo(f"{i}.jpg", 640, 640, "0" * 64),
            ModelInfo("t", "0", "0" * 64),
            FaceInfo(True, (0, 0, 640, 640), "test"),
            tuple(preds),
            counts={},
            counts_by_region={},
            grades={},
        )
        write_json(pred_dir / f"{i}.json", res.to_dict())
    return labels, pred_dir


def _coco_ap50(out: Path, class_agnostic: bool) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(out / "reference.coco.json"))
    dt = gt.loadRes(str(out / "predictions.coco.json"))
    ev = COCOeval(gt, dt, "bbox")
    ev.params.useCats = 0 if class_agnostic else 1
    ev.params.maxDets = [1, 10, 1000]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return float(ev.stats[1])  # AP at IoU 0.5


def test_box_ap50_agrees_with_pycocotools(tmp_path: Path) -> None:
    labels, pred = _dataset(tmp_path)
    cfg = EvalConfig(bootstrap=0, exclude_classes=())
    res = evaluate_predictions(labels, pred, cfg)
    paths = write_coco_pair(res, tmp_path)
    results = json.loads(paths["coco_predictions"].read_text())
    assert len(results) == res.metrics["groups"]["all"]["n_pred"]
    ours_all = res.metrics["headline"]["box_ap50"]
    ours_mean = res.metrics["box_map50"]
    # pycocotools interpolates precision at 101 recall points; ours is the exact area (VOC 2010+): they
    # agree to about a hundredth, not to the last digit.
    assert ours_all == pytest.approx(_coco_ap50(tmp_path, class_agnostic=True), abs=0.015)
    assert ours_mean == pytest.approx(_coco_ap50(tmp_path, class_agnostic=False), abs=0.015)
    assert math.isfinite(ours_all) and 0.3 < ours_all < 1.0
