"""Orchestration: pair each labelled photo with a prediction, evaluate it, keep only its record.

Three sources of predictions, one loop (``evaluate_pairs``):

* ``evaluate_photos``: photos + labels; the counting core (``LesionCounter``) counts each photo, in worker
  processes when ``jobs > 1``.
* ``evaluate_predictions``: a folder of count JSON files (``CountResult.to_dict``) + labels.
* ``evaluate_raters``: two label sets; rater B is scored against rater A (inter-rater agreement).

Only small per-photo records and the overlays of the few worst photos are held; photos are read one at
a time (in the workers).
"""

from __future__ import annotations

import csv
import dataclasses
import heapq
import json
import logging
import math
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lesioncount.data import (
    DEFAULT_CLASS_MAP,
    AnnotationError,
    ImageAnnotation,
    hayashi_grade_from_name,
    read_coco,
    read_voc_dir,
    read_yolo_dir,
    write_coco,
)
from lesioncount.evaluate.image_eval import (
    ALL,
    EvalConfig,
    EvaluateError,
    ImageEval,
    LesionSet,
    Overlay,
    evaluate_image,
)
from lesioncount.evaluate.summary import reported_groups, summarize
from lesioncount.io import IMAGE_EXTENSIONS, write_json
from lesioncount.types import CountResult, ModelInfo

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class Pair:
    """One labelled photo and what is scored against it (``pred`` already in the label frame)."""

    ref: ImageAnnotation
    pred: LesionSet
    photo: str | None = None
    model: ModelInfo | None = None
    timing_s: dict[str, float] | None = None


@dataclass(eq=False)
class EvalResult:
    """The outcome of a run: per-photo records, the metrics, the worst photos' overlays."""

    records: list[ImageEval]
    metrics: dict[str, Any]
    worst: list[Overlay]
    config: EvalConfig
    mode: str
    notes: list[str] = field(default_factory=list)
    #: per scored photo: its reference and the predictions in the reference's frame (for COCO export).
    pairs: list[tuple[ImageAnnotation, LesionSet]] = field(default_factory=list)


# ---------------------------------------------------------------- inputs


def load_labels(
    path: str | os.PathLike[str],
    *,
    class_map: Mapping[str, str] | None = None,
    yolo_names: list[str] | None = None,
    image_folder: str | os.PathLike[str] | None = None,
) -> list[ImageAnnotation]:
    """Read a label set, choosing the reader from what ``path`` is.

    Args:
        path: a COCO ``.json`` file, a folder of Pascal VOC ``.xml`` files, or a folder of YOLO ``.txt`` files.
        class_map: extra source-name -> class entries over ``DEFAULT_CLASS_MAP``.
        yolo_names: YOLO class index -> name list (else read from ``data.yaml`` beside or above the folder).
        image_folder: where YOLO photos are (to read their sizes).

    Raises:
        AnnotationError: the path is none of these, or a file in it is malformed.
    """
    cmap = {**DEFAULT_CLASS_MAP, **(class_map or {})}
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".json":
        return read_coco(p, cmap)
    if p.is_dir():
        if any(p.glob("*.xml")):
            return read_voc_dir(p, cmap)
        if any(p.glob("*.txt")):
            names = yolo_names or _yolo_names(p)
            return read_yolo_dir(p, names, cmap, image_folder)
        raise AnnotationError(f"{p}: no .xml (Pascal VOC) or .txt (YOLO) label files in this folder")
    if not p.exists():
        raise AnnotationError(f"{p}: no such file or folder")
    raise AnnotationError(f"{p}: labels must be a COCO .json file or a folder of VOC .xml / YOLO .txt files")


def _yolo_names(folder: Path) -> list[str]:
    import yaml

    for cand in (folder / "data.yaml", folder.parent / "data.yaml", folder.parent.parent / "data.yaml"):
        if cand.is_file():
            try:
                doc = yaml.safe_load(cand.read_text())
            except yaml.YAMLError as e:
                raise AnnotationError(f"{cand}: not valid YAML ({e})") from e
            names = doc.get("names") if isinstance(doc, dict) else None
            if isinstance(names, dict):
                names = [names[k] for k in sorted(names)]
            if isinstance(names, list) and names:
                return [str(n) for n in names]
            raise AnnotationError(f"{cand}: needs a 'names' list of class names")
    raise AnnotationError(f"{folder}: YOLO labels need class names: pass yolo_names or put a data.yaml beside them")


def _key(name: str) -> str:
    """Join key of a photo: its file stem (labels and predictions may differ in folder and extension)."""
    return Path(name).stem.lower()


def label_grade(ann: ImageAnnotation) -> int | None:
    """The Hayashi grade the label set itself gives a photo (``hayashi_grade`` key or ACNE04 file name)."""
    g = ann.attributes.get("hayashi_grade")
    if isinstance(g, int | float) and not isinstance(g, bool):
        return int(g)
    return hayashi_grade_from_name(ann.file_name)


def to_label_frame(pred: LesionSet, pred_wh: tuple[int, int], ann: ImageAnnotation) -> LesionSet:
    """Rescale predictions when the labels were drawn on a resized copy of the photo."""
    pw, ph = pred_wh
    if pw > 0 and ph > 0 and ann.width > 0 and ann.height > 0 and (pw, ph) != (ann.width, ann.height):
        return pred.scaled(ann.width / pw, ann.height / ph)
    return pred


def read_count_json(path: str | os.PathLike[str]) -> CountResult:
    """Read one count JSON (schema v1); raises ``EvaluateError`` naming the file when it is not one."""
    p = Path(path)
    try:
        return CountResult.from_dict(json.loads(p.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EvaluateError(f"{p}: not readable JSON ({e})") from e
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise EvaluateError(f"{p}: not a lesioncount count result (schema v1): {e!r}") from e


def _shown(names: list[str]) -> str:
    """The first few names of a list, and how many more."""
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _missing(what: str, names: list[str], cfg: EvalConfig, notes: list[str]) -> None:
    if not names:
        return
    shown = _shown(names)
    if cfg.missing == "error":
        raise EvaluateError(
            f"{len(names)} labelled photo(s) have no {what}: {shown}; pass --skip-missing to leave them out"
        )
    notes.append(f"{len(names)} labelled photo(s) without {what} left out: {shown}")


# ---------------------------------------------------------------- the loop


def evaluate_pairs(
    pairs: Iterable[Pair],
    cfg: EvalConfig,
    *,
    mode: str,
    total: int | None = None,
    progress: Progress | None = None,
    notes: list[str] | None = None,
) -> EvalResult:
    """Evaluate each pair as it comes (count first), then summarize (reduce second).

    Args:
        pairs: labelled photos with their predictions, consumed once.
        cfg: matching and scoring settings.
        mode: ``photos``, ``predictions`` or ``raters`` (recorded in the metrics).
        total: number of pairs, for ``progress``.
        progress: called as ``progress(done, total)`` after each photo.
        notes: messages gathered while pairing, carried into the result.
    """
    records: list[ImageEval] = []
    worst: list[tuple[int, int, Overlay]] = []  # min-heap on |count error|: the top ``cfg.worst`` survive
    models: dict[tuple[str, str, str], dict[str, Any]] = {}
    kept: list[tuple[ImageAnnotation, LesionSet]] = []
    timing: dict[str, list[float]] = {}
    for k, pair in enumerate(pairs):
        kept.append((pair.ref, pair.pred))
        for stage, sec in (pair.timing_s or {}).items():
            timing.setdefault(stage, []).append(float(sec))
        if pair.model is not None:
            m = pair.model
            models.setdefault((m.name, m.version, m.sha256), dataclasses.asdict(m) | {"n_images": 0})
            models[(m.name, m.version, m.sha256)]["n_images"] += 1
        rec, overlay = evaluate_image(
            pair.pred,
            LesionSet.from_refs(pair.ref.lesions),
            cfg,
            file_name=pair.ref.file_name,
            width=pair.ref.width,
            height=pair.ref.height,
            photo=pair.photo,
            label_grade=label_grade(pair.ref),
        )
        records.append(rec)
        if cfg.worst > 0:
            item = (abs(rec.count_error), -k, overlay)
            if len(worst) < cfg.worst:
                heapq.heappush(worst, item)
            elif item[:2] > worst[0][:2]:
                heapq.heapreplace(worst, item)
        if progress is not None:
            progress(k + 1, total or 0)
    metrics = summarize(records, cfg)
    notes = list(notes or [])
    if reported_groups(records, cfg) == [ALL] and not cfg.class_agnostic and records:
        notes.append("reference labels carry no lesion type: class-agnostic numbers only")
    if len(models) > 1:
        notes.append(f"the predictions come from {len(models)} different models or settings (see 'models')")
    # The model and its operating point, from the predictions themselves (not from what was asked for).
    # Speed, from the counts' own stage timings (as recorded when the photos were counted).
    speed = {
        stage: {"mean_ms": 1000 * float(np.mean(v)), "median_ms": 1000 * float(np.median(v))}
        for stage, v in timing.items()
    }
    metrics = {
        "mode": mode,
        "config": cfg.to_dict(),
        "models": list(models.values()),
        "speed_ms_per_photo": speed,
        "notes": notes,
        **metrics,
    }
    ordered = [o for _, _, o in sorted(worst, key=lambda t: (-t[0], -t[1]))]
    return EvalResult(records, metrics, ordered, cfg, mode, notes, kept)


def _scored(res: CountResult, cfg: EvalConfig) -> LesionSet:
    """The predictions ``cfg.marks`` names: the counted lesions, or the expert-style marks as one untyped class."""
    if cfg.marks == "expert":
        return LesionSet.from_lesions(dataclasses.replace(m, cls="lesion") for m in res.expert_marks)
    return LesionSet.from_lesions(res.lesions)


def _not_a_model(e: ValueError, model: str | os.PathLike[str] | None) -> EvaluateError:
    hint = " (a training checkpoint? lesioncount export turns it into one)" if str(model).endswith(".pt") else ""
    return EvaluateError(f"{e}{hint}")


def _counter_for(kwargs: dict[str, Any]) -> Any:
    """The counter for an in-process run; a file that is no model is one clear error."""
    from lesioncount.pipeline import LesionCounter

    try:
        return LesionCounter(**kwargs)
    except ValueError as e:
        raise _not_a_model(e, kwargs.get("model")) from e


def _model_to_count_with(model: str | os.PathLike[str] | None) -> Any:
    """The model's predictor, loaded in this process before workers start: a file that is no model (a
    training checkpoint) is one clear error, not a traceback from each worker."""
    from lesioncount.infer import Predictor, resolve_model_path

    try:
        return Predictor(resolve_model_path(model), threads=1)
    except ValueError as e:
        raise _not_a_model(e, model) from e


def _check_expert_model(predictor: Any) -> None:
    """Refuse to score expert-style marks with a model that gives none (every photo would score zero)."""
    if not predictor.has_experts or predictor.spec.expert_threshold <= 0:
        raise EvaluateError(
            f"{predictor.path.name} gives no expert-style marks (it has no experts' heatmap): "
            "score its counted marks (--marks counted) or use a model that has one"
        )


def evaluate_predictions(
    labels: list[ImageAnnotation],
    predictions: str | os.PathLike[str],
    cfg: EvalConfig | None = None,
    *,
    photos: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Score a folder of count JSON files against labels.

    A prediction belongs to the labelled photo whose file stem equals the stem of its ``image.path`` (or
    of the JSON file name). Predictions with no label are left out, and ``.json`` files that are not count
    results (a COCO file, a broken file) are left out; the notes say how many of each.

    Args:
        labels: the reference (from ``load_labels``).
        predictions: folder of ``*.json`` count results (searched recursively).
        cfg: settings (defaults when None).
        photos: folder of the photos, for the report's gallery (else ``image.path`` when it exists).
        progress: called as ``progress(done, total)``.
    """
    cfg = cfg or EvalConfig()
    d = Path(predictions)
    if not d.is_dir():
        raise EvaluateError(f"{d}: predictions must be a folder of count JSON files")
    labelled = {_key(a.file_name) for a in labels}
    index: dict[str, Path] = {}
    keys_of: dict[Path, set[str]] = {}
    not_results: list[str] = []
    for jp in sorted(d.rglob("*.json")):
        by_name = _key(jp.name.removesuffix(".json"))
        try:
            doc = json.loads(jp.read_text(encoding="utf-8"))
            keys_of[jp] = {_key(str(doc["image"]["path"])), by_name}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            if by_name not in labelled:
                not_results.append(str(jp.relative_to(d)))
                continue
            keys_of[jp] = {by_name}  # named after a labelled photo: reading it says what is wrong with it
        for k in sorted(keys_of[jp]):
            index.setdefault(k, jp)
    skipped = ""
    if not_results:
        skipped = f"{len(not_results)} .json file(s) that are not count results left out: {_shown(not_results)}"
    if not index:
        raise EvaluateError(f"{d}: no count results found" + (f" ({skipped})" if skipped else ""))
    notes: list[str] = [skipped] if skipped else []
    todo = [a for a in labels if _key(a.file_name) in index]
    _missing("prediction", [a.file_name for a in labels if _key(a.file_name) not in index], cfg, notes)
    if not todo:
        raise EvaluateError(f"{d}: no prediction belongs to a labelled photo, so there is nothing to score")
    extra = [str(jp.relative_to(d)) for jp, keys in keys_of.items() if not keys & labelled]
    if extra:
        notes.append(f"{len(extra)} prediction(s) without a labelled photo left out: {_shown(extra)}")
    photo_index = _photo_index(photos) if photos else {}

    def pairs() -> Iterator[Pair]:
        for ann in todo:
            res = read_count_json(index[_key(ann.file_name)])
            photo = photo_index.get(_key(ann.file_name)) or (res.image.path if Path(res.image.path).is_file() else None)
            pred = to_label_frame(_scored(res, cfg), (res.image.width, res.image.height), ann)
            yield Pair(ann, pred, str(photo) if photo else None, res.model, res.timing_s)

    return evaluate_pairs(pairs(), cfg, mode="predictions", total=len(todo), progress=progress, notes=notes)


def evaluate_raters(
    reference: list[ImageAnnotation],
    other: list[ImageAnnotation],
    cfg: EvalConfig | None = None,
    *,
    photos: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Score one label set (rater B, ``other``) against another (rater A, ``reference``).

    Only photos in ``reference`` are scored; those missing from ``other`` follow ``cfg.missing``. Labels
    carry no scores, so no AP is reported.
    """
    cfg = cfg or EvalConfig()
    by_key = {_key(a.file_name): a for a in other}
    notes: list[str] = []
    todo = [a for a in reference if _key(a.file_name) in by_key]
    _missing("second rating", [a.file_name for a in reference if _key(a.file_name) not in by_key], cfg, notes)
    extra = len(set(by_key) - {_key(a.file_name) for a in reference})
    if extra:
        notes.append(f"{extra} photo(s) rated only by the second label set were ignored")
    photo_index = _photo_index(photos) if photos else {}

    def pairs() -> Iterator[Pair]:
        for ann in todo:
            b = by_key[_key(ann.file_name)]
            pred = to_label_frame(LesionSet.from_refs(b.lesions), (b.width, b.height), ann)
            photo = photo_index.get(_key(ann.file_name))
            yield Pair(ann, pred, str(photo) if photo else None)

    return evaluate_pairs(pairs(), cfg, mode="raters", total=len(todo), progress=progress, notes=notes)


def _photo_index(folder: str | os.PathLike[str]) -> dict[str, Path]:
    d = Path(folder)
    if not d.is_dir():
        raise EvaluateError(f"{d}: photos must be a folder")
    out: dict[str, Path] = {}
    for p in sorted(d.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            out.setdefault(_key(p.name), p)
    return out


# ---------------------------------------------------------------- photos: run the counting core

_WORKER_COUNTER: Any = None  # one per worker process, made by the pool initializer


def _init_worker(counter_kwargs: dict[str, Any]) -> None:
    global _WORKER_COUNTER
    from lesioncount.pipeline import LesionCounter

    _WORKER_COUNTER = LesionCounter(**counter_kwargs)


def _count_with(counter: Any, path: str) -> dict[str, Any]:
    from lesioncount.io import ImageReadError

    try:
        return counter.count(path).to_dict()  # a dict pickles cheaply and the same on every Python
    except ImageReadError as e:
        return {"error": str(e)}


def _count_in_worker(path: str) -> dict[str, Any]:
    return _count_with(_WORKER_COUNTER, path)


def _bounded_map(fn: Callable[[str], Any], items: list[str], pool: ProcessPoolExecutor, ahead: int) -> Iterator[Any]:
    """``pool.map`` in order that keeps at most ``ahead`` photos in flight, so results never pile up."""
    queue: deque[Future[Any]] = deque()
    it = iter(items)
    for item in it:
        queue.append(pool.submit(fn, item))
        if len(queue) >= ahead:
            break
    while queue:
        fut = queue.popleft()
        nxt = next(it, None)
        if nxt is not None:
            queue.append(pool.submit(fn, nxt))
        yield fut.result()


def evaluate_photos(
    labels: list[ImageAnnotation],
    photos: str | os.PathLike[str],
    cfg: EvalConfig | None = None,
    *,
    model: str | os.PathLike[str] | None = None,
    threshold: float | None = None,
    jobs: int = 1,
    threads: int | None = None,
    counter: Any = None,
    progress: Progress | None = None,
    save_predictions: str | os.PathLike[str] | None = None,
) -> EvalResult:
    """Count every labelled photo with the counting core and score the counts against the labels.

    Args:
        labels: the reference (from ``load_labels``).
        photos: folder holding the photos (searched recursively, joined to labels by file stem).
        cfg: settings (defaults when None).
        model: .onnx model (None: ``$LESIONCOUNT_MODEL`` or the shipped model).
        threshold: one score threshold for every class (None: the model's calibrated thresholds).
        jobs: worker processes (1: count in this process).
        threads: ONNX Runtime threads per process (None: all cores with ``jobs=1``, one per worker otherwise).
        counter: an existing ``LesionCounter`` to count with in this process (``model``, ``threshold``,
            ``jobs`` and ``threads`` are then ignored).
        progress: called as ``progress(done, total)``.
        save_predictions: folder to write each photo's count JSON into (to re-score later without counting).
    """
    cfg = cfg or EvalConfig()
    photo_index = _photo_index(photos)
    notes: list[str] = []
    todo = [a for a in labels if _key(a.file_name) in photo_index]
    paths = [str(photo_index[_key(a.file_name)]) for a in todo]
    jobs = max(1, int(jobs))
    kwargs: dict[str, Any] = {"model": model, "threshold": threshold, "threads": threads or (1 if jobs > 1 else None)}
    if counter is None and (jobs == 1 or len(paths) <= 1):
        counter = _counter_for(kwargs)
    # Workers load the model themselves; it is checked here once, so that a bad file is one clear error.
    predictor = counter.predictor if counter is not None else _model_to_count_with(model)
    if cfg.marks == "expert":
        _check_expert_model(predictor)
    del predictor
    _missing("photo", [a.file_name for a in labels if _key(a.file_name) not in photo_index], cfg, notes)
    out_dir = Path(save_predictions) if save_predictions else None

    def pairs(results: Iterator[dict[str, Any]]) -> Iterator[Pair]:
        for ann, path, d in zip(todo, paths, results, strict=True):
            if "error" in d:
                if cfg.missing == "error":
                    raise EvaluateError(f"{path}: cannot be counted: {d['error']}; pass --skip-missing to leave it out")
                notes.append(f"{ann.file_name} left out: {d['error']}")
                continue
            if out_dir is not None:
                write_json(out_dir / (Path(path).stem + ".json"), d)
            res = CountResult.from_dict(d)
            pred = to_label_frame(_scored(res, cfg), (res.image.width, res.image.height), ann)
            yield Pair(ann, pred, path, res.model, res.timing_s)

    def run(results: Iterator[dict[str, Any]]) -> EvalResult:
        return evaluate_pairs(pairs(results), cfg, mode="photos", total=len(todo), progress=progress, notes=notes)

    if counter is not None:
        return run(_count_with(counter, p) for p in paths)
    # spawn, not fork: this process runs threads (rich's progress, ONNX Runtime) that a fork would copy mid-lock.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(kwargs,)) as pool:
        return run(_bounded_map(_count_in_worker, paths, pool, 2 * jobs))


# ---------------------------------------------------------------- outputs


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if hasattr(x, "item"):  # numpy scalar
        return _json_safe(x.item())
    return x


def per_image_rows(result: EvalResult) -> list[dict[str, Any]]:
    """One row per photo: grades, and per reported group the counts and match counts."""
    groups = list(result.metrics["groups"])
    rows = []
    for r in result.records:
        row: dict[str, Any] = {
            "file_name": r.file_name,
            "ref_grade": r.ref_grade,
            "ref_grade_source": r.ref_grade_source,
            "pred_grade": r.pred_grade,
        }
        for g in groups:
            ge = r.groups[g]
            row.update(
                {
                    f"ref_{g}": ge.n_ref,
                    f"pred_{g}": ge.n_pred,
                    f"error_{g}": ge.n_pred - ge.n_ref,
                    f"tp_{g}": ge.tp,
                    f"fp_{g}": ge.fp,
                    f"fn_{g}": ge.fn,
                }
            )
            if ge.box_tp is not None:
                row[f"box_tp_{g}"] = ge.box_tp
        rows.append(row)
    return rows


def write_coco_pair(result: EvalResult, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """The run as COCO: ``reference.coco.json`` (ground truth) and ``predictions.coco.json`` (results).

    The two share image ids and categories, so ``pycocotools`` (``COCO(reference).loadRes(predictions)``)
    and annotation tools (CVAT, Label Studio) read them as they are. Predictions are in the reference's
    pixels; a prediction's box is its own, its score its peak score. When the reference carries no lesion
    type, every prediction is filed under its one category (as the class-agnostic numbers are).

    Returns:
        ``{"coco_reference": path, "coco_predictions": path}``.
    """
    d = Path(out_dir)
    refs = [ref for ref, _ in result.pairs]
    typed = {les.cls for ref in refs for les in ref.lesions} - {"lesion"}
    names = sorted({les.cls for ref in refs for les in ref.lesions} | ({"lesion"} if not typed else set()))
    if typed:
        names = sorted(set(names) | {c for _, pred in result.pairs for c in pred.cls} - {"lesion"})
    cat = {n: i + 1 for i, n in enumerate(names)}
    gt_path, res_path = d / "reference.coco.json", d / "predictions.coco.json"
    write_coco(gt_path, refs, categories=cat)
    results = []
    for image_id, (_, pred) in enumerate(result.pairs, start=1):
        for k in range(len(pred)):
            x, y = pred.xy[k]
            w, h = pred.wh[k] if np.isfinite(pred.wh[k]).all() else (2 * pred.radius[k],) * 2
            results.append(
                {
                    "image_id": image_id,
                    "category_id": cat[pred.cls[k] if typed else "lesion"],
                    "bbox": [
                        round(float(x - w / 2), 2),
                        round(float(y - h / 2), 2),
                        round(float(w), 2),
                        round(float(h), 2),
                    ],
                    "score": round(float(pred.score[k]), 4),
                }
            )
    write_json(res_path, results)
    return {"coco_reference": gt_path, "coco_predictions": res_path}


def write_outputs(result: EvalResult, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``metrics.json`` and ``per_image.csv`` (the HTML report: ``report.evaluate_html.write_evaluation``).

    Returns:
        name -> path of each file written.
    """
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": d / "metrics.json", "per_image": d / "per_image.csv"}
    write_json(paths["metrics"], _json_safe(result.metrics))
    rows = per_image_rows(result)
    fields = list(rows[0]) if rows else ["file_name", "ref_grade", "ref_grade_source", "pred_grade"]
    with open(paths["per_image"], "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore", restval="")
        w.writeheader()
        w.writerows(rows)
    return paths


def plot_data(result: EvalResult) -> dict[str, Any]:
    """The arrays the report plots (so the report does no maths)."""
    ref = [r.groups[ALL].n_ref for r in result.records]
    pred = [r.groups[ALL].n_pred for r in result.records]
    return {
        "ref_count": ref,
        "pred_count": pred,
        "ba_mean": [(a + b) / 2 for a, b in zip(ref, pred, strict=True)],
        "ba_diff": [b - a for a, b in zip(ref, pred, strict=True)],
    }
