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
- For a soft count (``lesioncount calibrate MODEL.onnx --soft-count``, ``calibrate_soft_count``), on the
  held-out faces of the exported model's training run: the acne threshold and the softness
  (``ModelSpec.count_softness``) chosen together by the same rule and written into its contract; its int8
  twin keeps the softness and gets the threshold at which its held-out soft total matches fp32's.

Each after-training calibration can leave out the held-out photos sprinkled with salt-and-pepper noise
(``skip_speckled``; ``MAX_SPECKLES``; Roboflow's augmented copies of ACNE04).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lesioncount.count import hayashi_grade
from lesioncount.io import atomic_path
from lesioncount.synth import PLANTED_CHECK_RECALL
from lesioncount.train.checkpoint import load_checkpoint_file
from lesioncount.types import ACNE_CLASSES, EXPERT_OUTPUT, ModelSpec

log = logging.getLogger(__name__)

#: Acne thresholds tried after training, through the pipeline.
PIPELINE_GRID = tuple(float(t) for t in np.round(np.arange(0.05, 0.5 + 1e-9, 0.01), 4))
#: Acne thresholds and softnesses tried together for a soft count (``calibrate_soft_count``).
SOFT_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.08, 0.3 + 1e-9, 0.005), 4))
SOFTNESSES = (0.005, 0.01, 0.015, 0.02, 0.03, 0.04)
#: How far (and in what steps) the int8 twin's acne threshold may move from the fp32 model's.
INT8_SEARCH, INT8_STEP = 0.05, 0.0005
#: Roboflow's ACNE04 training export sprinkles two of most faces' three copies with salt-and-pepper noise
#: (176 of the 288 held-out photos, 2 of valid's 283). The peaks that noise raises push a threshold chosen
#: on those copies up: calibrated on all the held-out faces, three candidate models ranked opposite to
#: valid; on the copies without speckles, as valid ranks them. But 2.2.0's soft count chosen on those
#: copies alone (112 photos) did no better on valid (docs/model.md), so they are left out only when asked
#: (``skip_speckled``). A pixel is a speckle when it differs from its 3x3 median by more than
#: ``SPECKLE_LEVELS`` grey levels; a photo is speckled with more than ``MAX_SPECKLES`` of them.
SPECKLE_LEVELS, MAX_SPECKLES = 120, 20


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
    skip_speckled: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Choose the acne threshold through the counting pipeline and write it into ``checkpoint``.

    Args:
        flip_average: count with test-time flip averaging; recorded in the checkpoint, and so in the
            exported model's contract, beside the thresholds chosen for it.
        heat_sigma: count with the heatmaps smoothed by this sigma (output pixels); recorded likewise.
        int8: the checkpoint's int8 twin (from ``lesioncount export --int8``); when given, its acne
            threshold is matched to the fp32 count on the same faces and written into its metadata.
        skip_speckled: leave out the held-out copies sprinkled with noise speckles (``MAX_SPECKLES``).

    Returns:
        ``{"threshold", "hayashi_acc", "count_r", "held_out_photos", "table"}`` and ``held_out_uncertainty``'s
        keys, and with ``int8`` also
        ``"int8_threshold"``, ``"fp32_total"`` and ``"int8_total"`` (held-out acne counts).
    """
    from lesioncount.config import TrainConfig, from_dict
    from lesioncount.pipeline import LesionCounter
    from lesioncount.train.export import export_onnx

    state = load_checkpoint_file(checkpoint)
    held_out, grades = _held_out_faces(from_dict(TrainConfig, state["config"]), skip_speckled=skip_speckled)
    total = len(held_out) * (2 if int8 else 1)

    def acne_scores(model: Path, low: float, done: int) -> list[np.ndarray]:
        counter = LesionCounter(
            model, threads=threads, flip_average=flip_average, heat_sigma=heat_sigma, count_softness=0.0
        )  # every peak, even for an int8 twin whose contract counts softly
        return _acne_scores(counter, low, held_out, lambda k: progress(done + k, total) if progress else None)

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "m.onnx"
        export_onnx(checkpoint, onnx_path)
        scores = acne_scores(onnx_path, float(min(grid)), 0)
    acc, r, best, table = choose_acne_threshold(
        lambda t: [int((s >= t).sum()) for s in scores], [len(item.lesions) for item in held_out], grades, grid
    )
    state["thresholds"] = dict(state["thresholds"]) | dict.fromkeys(ACNE_CLASSES, best)
    state["flip_average"] = flip_average  # the thresholds hold for this way of running the model
    state["heat_sigma"] = float(heat_sigma)
    chosen = [int((s >= best).sum()) for s in scores]  # each held-out face's count at the chosen threshold
    faces = held_out_uncertainty(held_out, chosen, grades)
    state["calibration"] = {"held_out_photos": len(held_out), "hayashi_acc": acc, "count_r": r, "via": "pipeline"}
    state["calibration"] |= faces
    with atomic_path(checkpoint) as tmp_path:  # a kill never leaves a half-written checkpoint
        torch.save(state, tmp_path)
    res = {"threshold": best, "hayashi_acc": acc, "count_r": r, "held_out_photos": len(held_out), "table": table}
    res |= faces
    if int8:
        fp32_total = sum(chosen)
        scores8 = acne_scores(Path(int8), max(INT8_STEP, best - INT8_SEARCH), len(held_out))
        t8 = match_threshold(scores8, fp32_total, best)
        set_acne_threshold(int8, t8)
        int8_total = sum(int((s >= t8).sum()) for s in scores8)
        res |= {"int8_threshold": t8, "fp32_total": fp32_total, "int8_total": int8_total}
    return res


def set_acne_threshold(onnx_path: str | Path, threshold: float) -> None:
    """Rewrite the acne classes' threshold in an exported model's contract (atomically; weights untouched)."""
    from lesioncount.train.export import update_contract

    update_contract(onnx_path, thresholds=_spec(onnx_path).thresholds | dict.fromkeys(ACNE_CLASSES, threshold))


def calibrate_soft_count(
    model: str | Path,
    config: str | Path,
    *,
    int8: str | Path | None = None,
    thresholds: Sequence[float] = SOFT_THRESHOLDS,
    softnesses: Sequence[float] = SOFTNESSES,
    heat_sigma: float | None = None,
    threads: int | None = None,
    skip_speckled: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Choose an exported model's acne threshold and count softness together through the counting pipeline,
    and write both into its contract (``ModelSpec.count_softness``; the weights are untouched).

    Each held-out face of ``config``'s training run is counted once with every acne peak down to the lowest
    half-threshold; the soft count at ``(threshold, softness)`` is then the rounded ``soft_count`` of its
    peaks scoring at least half the threshold, as the pipeline counts it. Of the pairs that give the
    planted-lesion check (``lesioncount.synth.PLANTED_CHECK_*``) its recall, the one with the best Hayashi
    accuracy wins (count r breaks ties): a softer count centred higher can grade the held-out faces as
    well while it drops the small, weak lesions the check plants.

    Args:
        model: the fp32 ONNX model (rewritten in place, atomically).
        config: the model's training config (its data folder, held-out share and seed name the faces).
        int8: the int8 twin: same softness, and the threshold at which its held-out total matches fp32's.
        heat_sigma: count with the heatmaps smoothed so (output pixels), and write it into the contracts;
            None: as each model's contract says.
        skip_speckled: leave out the held-out copies sprinkled with noise speckles (``MAX_SPECKLES``).

    Returns:
        ``{"threshold", "count_softness", "hayashi_acc", "count_r", "held_out_photos", "table"}`` and
        ``held_out_uncertainty``'s keys, the table
        holding ``(accuracy, r, threshold, softness, planted recall)``; with ``int8`` also
        ``"int8_threshold"``, ``"fp32_total"`` and ``"int8_total"``.
    """
    from lesioncount.config import TrainConfig, load_yaml
    from lesioncount.count import soft_count
    from lesioncount.pipeline import LesionCounter
    from lesioncount.train.export import update_contract
    from lesioncount.types import NEAR_THRESHOLD_FRACTION

    held_out, grades = _held_out_faces(load_yaml(TrainConfig, config), skip_speckled=skip_speckled)
    total = len(held_out) * (2 if int8 else 1)

    def acne_scores(path: str | Path, low: float, done: int) -> list[np.ndarray]:
        counter = LesionCounter(path, threads=threads, heat_sigma=heat_sigma, count_softness=0.0)  # every peak
        return _acne_scores(counter, low, held_out, lambda k: progress(done + k, total) if progress else None)

    def counts(scores: list[np.ndarray], t: float, softness: float) -> list[int]:
        return [round(soft_count(s[s >= NEAR_THRESHOLD_FRACTION * t], t, softness)) for s in scores]

    scores = acne_scores(model, NEAR_THRESHOLD_FRACTION * min(thresholds), 0)
    reference = [len(item.lesions) for item in held_out]
    recall = planted_recall(model, NEAR_THRESHOLD_FRACTION * min(thresholds), threads=threads, heat_sigma=heat_sigma)
    table = []
    for softness in softnesses:

        def counts_at(t: float, sn: float = softness) -> list[int]:
            return counts(scores, t, sn)

        rows = choose_acne_threshold(counts_at, reference, grades, thresholds)[3]
        table += [(a, rr, t, softness, recall(t, softness)) for a, rr, t in rows]
    keep = [row for row in table if row[4] >= PLANTED_CHECK_RECALL]
    if not keep:
        raise ValueError("no threshold and softness keep the planted-lesion recall; the model itself must improve")
    acc, r, best, softness, _ = max(keep)
    # The heat smoothing counted with is written beside the thresholds chosen for it.
    smooth = {} if heat_sigma is None else {"heat_sigma": float(heat_sigma)}
    update_contract(
        model,
        count_softness=softness,
        thresholds=_spec(model).thresholds | dict.fromkeys(ACNE_CLASSES, best),
        **smooth,
    )
    res = {
        "threshold": best,
        "count_softness": softness,
        "hayashi_acc": acc,
        "count_r": r,
        "held_out_photos": len(held_out),
        "table": table,
    }
    chosen = counts(scores, best, softness)  # each held-out face's count at the chosen pair
    res |= held_out_uncertainty(held_out, chosen, grades)
    if int8:
        fp32_total = sum(chosen)
        scores8 = acne_scores(int8, NEAR_THRESHOLD_FRACTION * max(INT8_STEP, best - INT8_SEARCH), len(held_out))
        grid = np.round(np.arange(max(INT8_STEP, best - INT8_SEARCH), best + INT8_SEARCH + 1e-9, INT8_STEP), 4)
        t8 = float(min(grid, key=lambda t: (abs(sum(counts(scores8, t, softness)) - fp32_total), abs(t - best))))
        update_contract(
            int8, count_softness=softness, thresholds=_spec(int8).thresholds | dict.fromkeys(ACNE_CLASSES, t8), **smooth
        )
        res |= {"int8_threshold": t8, "fp32_total": fp32_total, "int8_total": sum(counts(scores8, t8, softness))}
    return res


def held_out_uncertainty(items: Sequence[Any], counts: Sequence[int], grades: Sequence[int]) -> dict[str, Any]:
    """How many faces the held-out photos are, and the 95% bootstrap interval of the Hayashi accuracy of
    ``counts``, resampling faces (``data.source_face``): ``{"held_out_faces", "hayashi_ci95"}``.

    ACNE04's Roboflow export holds most faces three times (288 held-out photos of 96 faces for the shipped
    model), so the accuracy measured there is about as uncertain as 96 photos' would be, and two
    candidates a few photos apart on it are not told apart (``docs/model.md``).
    """
    from lesioncount.bootstrap import bootstrap_ci
    from lesioncount.data import source_face

    faces = [source_face(str(item.path)) for item in items]
    right = np.array([hayashi_grade(int(n)) == g for n, g in zip(counts, grades, strict=True)], float)
    ci = bootstrap_ci(len(right), lambda idx: {"acc": float(right[idx].mean())}, rng=0, groups=faces)
    return {"held_out_faces": len(set(faces)), "hayashi_ci95": list(ci.get("acc", (float("nan"),) * 2))}


def planted_recall(
    model: str | Path, low: float, *, threads: int | None = None, heat_sigma: float | None = None
) -> Callable[[float, float], float]:
    """The share of the planted-lesion check's inflammatory lesions that a soft count at ``(threshold,
    softness)`` marks, for any threshold of at least ``2 * low`` (one count of the check photo at ``low``)."""
    from lesioncount.count import soft_marks
    from lesioncount.matching import match_centres
    from lesioncount.pipeline import LesionCounter
    from lesioncount.synth import PLANTED_CHECK_PLAN, PLANTED_CHECK_SEED, PLANTED_CHECK_UPSCALE, planted_photo

    image, planted = planted_photo(PLANTED_CHECK_SEED, upscale=PLANTED_CHECK_UPSCALE, plan=PLANTED_CHECK_PLAN)
    counter = LesionCounter(model, threads=threads, heat_sigma=heat_sigma, count_softness=0.0)
    counter.thresholds |= dict.fromkeys(ACNE_CLASSES, low)
    found = counter.count(image).lesions
    targets = [p for p in planted if p.cls == "inflammatory"]
    tolerance = [1.5 * p.radius + 4 for p in targets]

    def recall(threshold: float, softness: float) -> float:
        marks, _ = soft_marks(found, counter.spec.thresholds | dict.fromkeys(ACNE_CLASSES, threshold), softness)
        hits = match_centres([(les.x, les.y) for les in marks], [(p.x, p.y) for p in targets], tolerance)[0]
        return len(hits) / max(1, len(targets))

    return recall


def speckle_mask(image: np.ndarray) -> np.ndarray:
    """Where an image (HxW grey or HxWx3 BGR) differs from its 3x3 median by more than ``SPECKLE_LEVELS``
    grey levels: salt-and-pepper noise, which photos of skin do not have."""
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return np.abs(grey.astype(np.int16) - cv2.medianBlur(grey, 3).astype(np.int16)) > SPECKLE_LEVELS


def noise_speckles(image: np.ndarray) -> int:
    """The number of noise speckles in an image (``speckle_mask``)."""
    return int(speckle_mask(image).sum())


def is_speckled(path: str | Path) -> bool:
    """True when the photo has more than ``MAX_SPECKLES`` noise speckles (an augmented training copy)."""
    import cv2

    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise ValueError(f"cannot read {path}")
    return noise_speckles(grey) > MAX_SPECKLES


def _held_out_faces(cfg: Any, *, skip_speckled: bool = False) -> tuple[list[Any], list[int]]:
    """The held-out faces of a training run (``TrainConfig``: its data, held-out share and seed) and the
    Hayashi grade of each, from its file name; with ``skip_speckled``, without the copies sprinkled with
    noise speckles (see ``MAX_SPECKLES``)."""
    from lesioncount.data import hayashi_grade_from_name
    from lesioncount.train.dataset import load_items, split_by_source

    _, held_out = split_by_source(load_items(cfg.data_dir, cfg.class_map), cfg.val_fraction, cfg.seed)
    if not held_out:
        raise ValueError(f"{cfg.data_dir}: no held-out faces to calibrate on")
    if skip_speckled:
        plain = [item for item in held_out if not is_speckled(item.path)]
        if not plain:
            raise ValueError(
                f"{cfg.data_dir}: every held-out photo is sprinkled with noise speckles; "
                "calibrate on them without --skip-speckled"
            )
        log.info("%d of %d held-out photos have noise speckles: left out", len(held_out) - len(plain), len(held_out))
        held_out = plain
    grades = [hayashi_grade_from_name(item.path) for item in held_out]
    if any(g is None for g in grades):
        raise ValueError(f"{cfg.data_dir}: every held-out photo needs a grade in its file name (levelK_N)")
    return held_out, [int(g) for g in grades if g is not None]


def _acne_scores(counter: Any, low: float, held_out: Sequence[Any], step: Callable[[int], object]) -> list[np.ndarray]:
    """The acne peak scores of each held-out face, counted with every acne peak down to ``low``.

    Only the acne classes go low: a scar peak at a low threshold would take over the place of an acne peak
    (one class per place), which at the real thresholds it would not. ``step(k)`` follows the progress.
    """
    counter.thresholds |= dict.fromkeys(ACNE_CLASSES, low)
    out = []
    for k, item in enumerate(held_out):
        result = counter.count(item.path)
        out.append(np.array([les.score for les in result.lesions if les.cls in ACNE_CLASSES]))
        step(k + 1)
    return out


def _spec(onnx_path: str | Path) -> ModelSpec:
    import onnx

    from lesioncount.train.contract import contract_of

    return contract_of(onnx.load(str(onnx_path)))


#: Thresholds tried for the experts' heatmap, and the floor its calibration counts down to.
EXPERT_GRID = tuple(float(t) for t in np.round(np.arange(0.1, 0.7 + 1e-9, 0.01), 4))


def calibrate_expert_threshold(
    model: str | Path,
    coco: str | Path,
    photos: Sequence[str | Path],
    *,
    int8: str | Path | None = None,
    grid: Sequence[float] = EXPERT_GRID,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Choose the experts' heatmap threshold (``ModelSpec.expert_threshold``) on photos with expert points
    that the branch was not trained on, and write it into the model's contract.

    The threshold is the one with the best F1 of the expert-style marks against the points (centres within
    max(radius, 8 px), Hungarian matching, summed over the photos), through the whole pipeline.

    Args:
        model: the ONNX model with an ``experts`` output (rewritten in place, atomically).
        coco: the point labels (``point`` + ``radius``).
        photos: the calibration photos (``split.json``'s ``calibration`` from ``train_expert_branch``).
        int8: its int8 twin: the threshold at which its marks on these photos total fp32's.

    Returns:
        ``{"threshold", "f1", "photos", "points", "table"}`` (the table: ``(threshold, f1, marks)``), with
        ``int8`` also ``"int8_threshold"``, ``"fp32_marks"`` and ``"int8_marks"``.
    """
    import dataclasses

    from lesioncount.data import read_coco
    from lesioncount.matching import match_centres, reference_tolerance_px
    from lesioncount.pipeline import LesionCounter
    from lesioncount.train.export import update_contract

    labels = {a.file_name: a for a in read_coco(coco, {"acne": "inflammatory"})}
    names = [Path(p).name for p in photos]
    missing = [n for n in names if n not in labels]
    if missing or not names:
        raise ValueError(f"{coco}: no expert points for {missing[:3] or 'any photo'}")
    low = min(grid)
    total = len(names) * (2 if int8 else 1)

    def marks(path: str | Path, done: int) -> list[np.ndarray]:
        counter = LesionCounter(path, threads=threads)
        if not counter.predictor.has_experts:
            raise ValueError(f"{path}: the model has no '{EXPERT_OUTPUT}' output to calibrate")
        counter.spec = dataclasses.replace(counter.spec, expert_threshold=low)
        out = []
        for k, p in enumerate(photos):
            r = counter.count(p)
            out.append(np.array([(m.x, m.y, m.score) for m in r.expert_marks]).reshape(-1, 3))
            if progress:
                progress(done + k + 1, total)
        return out

    found = marks(model, 0)
    refs = []
    for n in names:
        ann = labels[n]
        refs.append(
            (
                np.array([(les.x, les.y) for les in ann.lesions]).reshape(-1, 2),
                reference_tolerance_px([les.radius or 0.0 for les in ann.lesions], mode="radius", min_px=8.0),
            )
        )
    table = []
    for t in grid:
        tp = fp = fn = 0
        for m, (ref, tol) in zip(found, refs, strict=True):
            pred = m[m[:, 2] >= t, :2]
            hits = len(match_centres(pred, ref, tol)[0])
            tp, fp, fn = tp + hits, fp + len(pred) - hits, fn + len(ref) - hits
        table.append((float(t), 2 * tp / max(1, 2 * tp + fp + fn), tp + fp))
    best, f1, n_marks = max(table, key=lambda row: (row[1], -row[0]))
    update_contract(model, expert_threshold=best)
    res: dict[str, Any] = {
        "threshold": best,
        "f1": f1,
        "photos": len(names),
        "points": sum(len(r) for r, _ in refs),
        "table": table,
    }
    if int8:
        found8 = marks(int8, len(names))

        def marks8(t: float) -> int:
            return sum(int((m[:, 2] >= t).sum()) for m in found8)

        t8 = float(min(grid, key=lambda t: (abs(marks8(t) - n_marks), abs(t - best))))
        update_contract(int8, expert_threshold=t8)
        res |= {"int8_threshold": t8, "fp32_marks": n_marks, "int8_marks": marks8(t8)}
    return res
