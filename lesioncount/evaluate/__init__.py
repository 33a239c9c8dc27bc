"""Score counts and detections against labelled photos: per-photo matches -> metrics -> report.

Count first, reduce second: ``image_eval.evaluate_image`` turns one photo into a small record,
``summary.summarize`` reduces the records, ``run`` pairs photos/predictions with labels and writes
``metrics.json``, ``per_image.csv`` and ``report.html``. ``matching`` and ``metrics`` are pure functions.
"""

from lesioncount.evaluate.image_eval import EvalConfig, EvaluateError, ImageEval, LesionSet, evaluate_image
from lesioncount.evaluate.run import (
    EvalResult,
    evaluate_photos,
    evaluate_predictions,
    evaluate_raters,
    load_labels,
    write_outputs,
)
from lesioncount.evaluate.summary import summarize

__all__ = [
    "EvalConfig",
    "EvalResult",
    "EvaluateError",
    "ImageEval",
    "LesionSet",
    "evaluate_image",
    "evaluate_photos",
    "evaluate_predictions",
    "evaluate_raters",
    "load_labels",
    "summarize",
    "write_outputs",
]
