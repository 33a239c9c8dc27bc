"""Count first: one photo's predictions vs its reference -> a small ``ImageEval`` record.

Everything a summary needs (match counts, per-prediction scores and true-positive flags, counts, grades)
lives in the record, so a run over 1,000 photos keeps 1,000 small records and never a photo.
``summarize`` (in ``summary.py``) reduces the records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from lesioncount.count import hayashi_grade
from lesioncount.data import RefLesion
from lesioncount.matching import (
    TOLERANCE_MODES,
    box_iou,
    greedy_match_by_score,
    match_boxes,
    match_centres,
    reference_tolerance_px,
)
from lesioncount.types import CLASSES, Lesion, bad_class_map_targets

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]

#: Name of the class-agnostic group.
ALL = "all"
GRADE_SOURCES: tuple[str, ...] = ("auto", "labels", "counts")


class EvaluateError(ValueError):
    """Inputs to an evaluation are unusable; the message says which and how to fix them."""


#: Which predictions ``EvalConfig.marks`` can score.
MARKS = ("counted", "expert")


@dataclass(frozen=True)
class EvalConfig:
    """How predictions are matched and scored (saved into ``metrics.json``).

    Attributes:
        tolerance_mode: centre tolerance of a reference lesion: ``radius``, ``half_diagonal`` of its box, or
            ``fixed`` (``min_tolerance_px`` for all).
        tolerance_scale: factor on the radius or half diagonal.
        min_tolerance_px: tolerance floor in reference-label pixels.
        iou_threshold: box IoU needed for a box match (and for mAP).
        class_agnostic: report only the class-agnostic group, no per-class numbers.
        exclude_classes: classes left out of the class-agnostic group on both sides (scars are counted
            apart from active acne, as in ``total_acne``).
        grade_from: the reference Hayashi grade: ``labels`` (the label file's ``hayashi_grade`` or an ACNE04
            file name), ``counts`` (from the reference count) or ``auto`` (labels where present).
        bootstrap: bootstrap resamples for the 95% intervals (0: none).
        seed: bootstrap seed.
        worst: photos shown in the report's gallery of worst count errors.
        missing: a labelled photo with no prediction (or photo): ``error`` or ``skip``.
        class_map: extra source-name -> class entries on top of ``lesioncount.data.DEFAULT_CLASS_MAP``.
        marks: which predictions are scored: ``counted`` (the lesions, as counted and graded) or ``expert``
            (the expert-style marks of a model with an experts' heatmap, as one untyped class; the count and
            grade figures then describe them).
    """

    tolerance_mode: str = "radius"
    tolerance_scale: float = 1.0
    min_tolerance_px: float = 8.0
    iou_threshold: float = 0.5
    class_agnostic: bool = False
    exclude_classes: tuple[str, ...] = ("scar",)
    grade_from: str = "auto"
    bootstrap: int = 1000
    seed: int = 0
    worst: int = 12
    missing: str = "error"
    class_map: dict[str, str] = field(default_factory=dict)
    marks: str = "counted"

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude_classes", tuple(self.exclude_classes))
        object.__setattr__(self, "class_map", {str(k).strip().lower(): str(v) for k, v in self.class_map.items()})
        bad_map = bad_class_map_targets(self.class_map)
        if bad_map:
            raise EvaluateError(bad_map)
        if self.tolerance_mode not in TOLERANCE_MODES:
            raise EvaluateError(
                f"tolerance_mode {self.tolerance_mode!r} unknown; use one of {', '.join(TOLERANCE_MODES)}"
            )
        if self.grade_from not in GRADE_SOURCES:
            raise EvaluateError(f"grade_from {self.grade_from!r} unknown; use one of {', '.join(GRADE_SOURCES)}")
        if self.marks not in MARKS:
            raise EvaluateError(f"marks {self.marks!r} unknown; use one of {', '.join(MARKS)}")
        if self.missing not in ("error", "skip"):
            raise EvaluateError(f"missing {self.missing!r} unknown; use 'error' or 'skip'")
        if not 0 < self.iou_threshold <= 1:
            raise EvaluateError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.min_tolerance_px < 0 or self.tolerance_scale <= 0:
            raise EvaluateError("min_tolerance_px must be >= 0 and tolerance_scale > 0")

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["exclude_classes"] = list(self.exclude_classes)
        return d


@dataclass(frozen=True, eq=False)
class LesionSet:
    """Lesions of one photo as arrays (either side of a comparison).

    Attributes:
        cls: (N,) class names.
        xy: (N, 2) centres in pixels.
        wh: (N, 2) box width/height in pixels; NaN rows for bare points.
        radius: (N,) radii in pixels (0 when unknown).
        score: (N,) confidences (1.0 for labels).
        scored: whether the scores mean anything (False for labels, so no AP is reported).
    """

    cls: tuple[str, ...]
    xy: FloatArray
    wh: FloatArray
    radius: FloatArray
    score: FloatArray
    scored: bool = True

    def __len__(self) -> int:
        return len(self.cls)

    @property
    def has_boxes(self) -> bool:
        return bool(np.isfinite(self.wh).all())

    @property
    def boxes(self) -> FloatArray:
        """(N, 4) ``(x, y, w, h)`` boxes centred on ``xy``."""
        return np.column_stack([self.xy - self.wh / 2, self.wh]) if len(self) else np.zeros((0, 4))

    def select(self, keep: BoolArray) -> LesionSet:
        return LesionSet(
            tuple(c for c, k in zip(self.cls, keep, strict=True) if k),
            self.xy[keep],
            self.wh[keep],
            self.radius[keep],
            self.score[keep],
            self.scored,
        )

    def scaled(self, sx: float, sy: float) -> LesionSet:
        """The same lesions in a frame resized by ``sx`` x ``sy`` (radius scaled by the mean)."""
        f = np.array([sx, sy])
        return LesionSet(self.cls, self.xy * f, self.wh * f, self.radius * (sx + sy) / 2, self.score, self.scored)

    @classmethod
    def empty(cls) -> LesionSet:
        return cls((), np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), np.zeros(0))

    @classmethod
    def from_lesions(cls, lesions: Iterable[Lesion]) -> LesionSet:
        """From predicted lesions (``CountResult.lesions``); centres are the lesion ``x``/``y``."""
        ls = list(lesions)
        if not ls:
            return cls.empty()
        return cls(
            tuple(le.cls for le in ls),
            np.array([[le.x, le.y] for le in ls], np.float64),
            np.array([[le.bbox[2], le.bbox[3]] for le in ls], np.float64),
            np.array([min(le.bbox[2], le.bbox[3]) / 2 for le in ls], np.float64),
            np.array([le.score for le in ls], np.float64),
        )

    @classmethod
    def from_refs(cls, refs: Iterable[RefLesion]) -> LesionSet:
        """From labelled lesions; a bare point has a NaN box."""
        rs = list(refs)
        if not rs:
            return dataclasses.replace(cls.empty(), scored=False)
        nan = float("nan")
        return cls(
            tuple(r.cls for r in rs),
            np.array([[r.x, r.y] for r in rs], np.float64),
            np.array([[r.bbox[2], r.bbox[3]] if r.bbox is not None else [nan, nan] for r in rs], np.float64),
            np.array([r.radius for r in rs], np.float64),
            np.ones(len(rs)),
            scored=False,
        )


@dataclass(frozen=True, eq=False)
class GroupEval:
    """Matches of one class group (or all classes) on one photo.

    ``ap_tp`` flags each prediction (in ``scores`` order) as matched under score-ordered greedy matching,
    which average precision needs; ``tp`` counts the Hungarian matches at the operating point.
    ``box_*`` are None when either side lacks boxes.
    """

    n_pred: int
    n_ref: int
    tp: int
    scores: FloatArray
    ap_tp: BoolArray
    box_tp: int | None = None
    box_ap_tp: BoolArray | None = None
    #: (len(TOLERANCE_SWEEP), n_pred): AP true positives at each tolerance of the sweep.
    sweep_tp: BoolArray | None = None

    @property
    def fp(self) -> int:
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        return self.n_ref - self.tp


@dataclass(frozen=True, eq=False)
class ImageEval:
    """Everything the summary needs about one photo."""

    file_name: str
    ref_grade: int
    ref_grade_source: str
    pred_grade: int
    groups: dict[str, GroupEval]
    scored: bool = True
    #: (reference class, predicted class) -> lesions, from the class-agnostic matching; ``background``
    #: stands for no lesion (a missed reference, or a prediction with no reference).
    confusion: dict[tuple[str, str], int] = field(default_factory=dict)
    #: per reference size bin (``SIZE_BINS``): (reference lesions, of them found), class-agnostic.
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def count_error(self) -> int:
        g = self.groups[ALL]
        return g.n_pred - g.n_ref


@dataclass(frozen=True, eq=False)
class Overlay:
    """What the report draws for one photo: both lesion sets and which of them matched (class-agnostic)."""

    file_name: str
    photo: str | None
    width: int
    height: int
    pred: LesionSet
    ref: LesionSet
    pred_matched: BoolArray
    ref_matched: BoolArray
    ref_tolerance_px: FloatArray
    n_pred: int
    n_ref: int


#: Tolerance factors of the sweep (the point analogue of COCO's IoU 0.50:0.95): 0.5 to 2 times the
#: reference's tolerance (its radius, and the floor), in steps of 0.25.
TOLERANCE_SWEEP: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


BACKGROUND = "background"
#: Reference lesion sizes, by radius in label pixels (ACNE04 frames: lesions are about 2-12 px across).
SIZE_BINS: tuple[tuple[str, float, float], ...] = (
    ("small (radius < 4 px)", 0.0, 4.0),
    ("medium (4-8 px)", 4.0, 8.0),
    ("large (>= 8 px)", 8.0, float("inf")),
)


def size_hits(radius: FloatArray, found: BoolArray) -> dict[str, tuple[int, int]]:
    """Per size bin: how many reference lesions it holds, and how many of them were found."""
    return {
        name: (int(sel.sum()), int((sel & found).sum()))
        for name, lo, hi in SIZE_BINS
        for sel in [(radius >= lo) & (radius < hi)]
    }


def class_confusion(
    pred_cls: Sequence[str], ref_cls: Sequence[str], pred_idx: IntArray, ref_idx: IntArray
) -> dict[tuple[str, str], int]:
    """(reference class, predicted class) -> count over matched pairs, missed references and unmatched
    predictions (``background`` on the empty side)."""
    out: dict[tuple[str, str], int] = {}

    def add(key: tuple[str, str]) -> None:
        out[key] = out.get(key, 0) + 1

    for i, j in zip(pred_idx, ref_idx, strict=True):
        add((ref_cls[j], pred_cls[i]))
    for j in sorted(set(range(len(ref_cls))) - {int(j) for j in ref_idx}):
        add((ref_cls[j], BACKGROUND))
    for i in sorted(set(range(len(pred_cls))) - {int(i) for i in pred_idx}):
        add((BACKGROUND, pred_cls[i]))
    return out


def group_masks(pred: LesionSet, ref: LesionSet, cfg: EvalConfig) -> dict[str, tuple[BoolArray, BoolArray]]:
    """Which lesions of each side belong to each group: ``all`` and (unless class-agnostic) each class."""
    pc, rc = np.array(pred.cls, dtype=object), np.array(ref.cls, dtype=object)
    ex = list(cfg.exclude_classes)
    out = {ALL: (~np.isin(pc, ex), ~np.isin(rc, ex))}
    if not cfg.class_agnostic:
        for c in CLASSES:
            out[c] = (pc == c, rc == c)
    return out


def _evaluate_group(
    pred: LesionSet, ref: LesionSet, cfg: EvalConfig
) -> tuple[GroupEval, BoolArray, BoolArray, FloatArray, tuple[IntArray, IntArray]]:
    tol = reference_tolerance_px(
        ref.radius,
        ref.wh,
        mode=cfg.tolerance_mode,  # type: ignore[arg-type]  # checked in EvalConfig.__post_init__
        scale=cfg.tolerance_scale,
        min_px=cfg.min_tolerance_px,
    )
    pi, ri, _ = match_centres(pred.xy, ref.xy, tol)
    pm, rm = np.zeros(len(pred), bool), np.zeros(len(ref), bool)
    pm[pi], rm[ri] = True, True
    sweep = np.zeros((len(TOLERANCE_SWEEP), len(pred)), bool)
    if len(pred) and len(ref):
        d = np.hypot(pred.xy[:, None, 0] - ref.xy[None, :, 0], pred.xy[:, None, 1] - ref.xy[None, :, 1])
        ap_tp = greedy_match_by_score(pred.score, d <= tol[None, :], -d)
        for k, f in enumerate(TOLERANCE_SWEEP):
            # The whole tolerance scales, its floor too: at half the radius, half the floor.
            tk = reference_tolerance_px(
                ref.radius,
                ref.wh,
                mode=cfg.tolerance_mode,  # type: ignore[arg-type]
                scale=cfg.tolerance_scale * f,
                min_px=cfg.min_tolerance_px * f,
            )
            sweep[k] = greedy_match_by_score(pred.score, d <= tk[None, :], -d)
    else:
        ap_tp = np.zeros(len(pred), bool)
    box_tp, box_ap_tp = None, None
    if pred.has_boxes and ref.has_boxes:
        bi, _, _ = match_boxes(pred.boxes, ref.boxes, cfg.iou_threshold)
        box_tp = len(bi)
        iou = box_iou(pred.boxes, ref.boxes)
        box_ap_tp = (
            greedy_match_by_score(pred.score, iou >= cfg.iou_threshold, iou) if iou.size else np.zeros(len(pred), bool)
        )
    g = GroupEval(len(pred), len(ref), len(pi), pred.score.copy(), ap_tp, box_tp, box_ap_tp, sweep)
    return g, pm, rm, tol, (pi, ri)


def evaluate_image(
    pred: LesionSet,
    ref: LesionSet,
    cfg: EvalConfig,
    *,
    file_name: str,
    width: int = 0,
    height: int = 0,
    photo: str | None = None,
    label_grade: int | None = None,
) -> tuple[ImageEval, Overlay]:
    """Match one photo's predictions to its reference and count.

    Args:
        pred: predicted lesions, in the reference's pixel frame.
        ref: reference lesions.
        cfg: matching settings.
        file_name: the photo's name in the label set.
        width: label frame width in pixels (for the report; 0 if unknown).
        height: label frame height in pixels.
        photo: path of the photo, if it can be shown.
        label_grade: the reference's own Hayashi grade (label file or file name), if it has one.

    Returns:
        The photo's record and what the report would draw for it.
    """
    groups: dict[str, GroupEval] = {}
    overlay = None
    confusion: dict[tuple[str, str], int] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for name, (pk, rk) in group_masks(pred, ref, cfg).items():
        p_sub, r_sub = pred.select(pk), ref.select(rk)
        g, pm, rm, tol, (pi, ri) = _evaluate_group(p_sub, r_sub, cfg)
        groups[name] = g
        if name == ALL:
            overlay = Overlay(file_name, photo, width, height, p_sub, r_sub, pm, rm, tol, g.n_pred, g.n_ref)
            confusion = class_confusion(p_sub.cls, r_sub.cls, pi, ri)
            sizes = size_hits(r_sub.radius, rm)
    assert overlay is not None
    n_ref = groups[ALL].n_ref
    if cfg.grade_from == "counts" or label_grade is None:
        if cfg.grade_from == "labels":
            raise EvaluateError(
                f"{file_name}: grade_from='labels' but the labels give no Hayashi grade for it; "
                "use grade_from='auto' or 'counts'"
            )
        ref_grade, source = hayashi_grade(n_ref), "counts"
    else:
        if not 0 <= int(label_grade) <= 3:
            raise EvaluateError(f"{file_name}: Hayashi grade {label_grade!r} outside 0..3")
        ref_grade, source = int(label_grade), "labels"
    rec = ImageEval(
        file_name, ref_grade, source, hayashi_grade(groups[ALL].n_pred), groups, pred.scored, confusion, sizes
    )
    return rec, overlay


def concat_scores(
    records: Sequence[ImageEval], group: str, box: bool = False
) -> tuple[FloatArray, BoolArray, npt.NDArray[np.intp]]:
    """All predictions of a group across photos: ``(scores, is_tp, photo_index)``."""
    s, t, ix = [], [], []
    for k, r in enumerate(records):
        g = r.groups[group]
        flags = g.box_ap_tp if box else g.ap_tp
        if flags is None:
            continue
        s.append(g.scores)
        t.append(flags)
        ix.append(np.full(len(g.scores), k, np.intp))
    if not s:
        return np.zeros(0), np.zeros(0, bool), np.zeros(0, np.intp)
    return np.concatenate(s), np.concatenate(t), np.concatenate(ix)
