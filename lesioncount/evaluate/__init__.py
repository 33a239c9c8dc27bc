"""Score counts and detections against labelled photos: per-photo matches -> metrics -> report.

Count first, reduce second: ``image_eval.evaluate_image`` turns one photo into a small record,
``summary.summarize`` reduces the records, ``run`` pairs photos/predictions with labels and writes
``metrics.json``, ``per_image.csv`` and ``report.html``. ``matching`` and ``metrics`` are pure functions.

Names are imported on first use, so ``lesioncount --help`` and other subcommands never load scipy
(an ``eval`` extra).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_EXPORTS = {
    "EvalConfig": "image_eval",
    "EvaluateError": "image_eval",
    "ImageEval": "image_eval",
    "LesionSet": "image_eval",
    "evaluate_image": "image_eval",
    "EvalResult": "run",
    "evaluate_photos": "run",
    "evaluate_predictions": "run",
    "evaluate_raters": "run",
    "load_labels": "run",
    "write_outputs": "run",
    "summarize": "summary",
}

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


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"lesioncount.evaluate.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'lesioncount.evaluate' has no attribute {name!r}")
