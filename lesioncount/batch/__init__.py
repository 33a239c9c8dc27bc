"""Batch scoring of trial datasets: manifest -> resumable results store -> statistician's tables.

``run_batch`` does what ``lesioncount score`` does; the pieces are usable on their own:
``read_manifest`` (validation), ``ResultStore`` (crash-safe SQLite), ``score_manifest`` (local pool or
Dask), ``build_tables``/``write_tables``. Needs the ``batch`` extra (pandas, pyarrow, dask[distributed]).

Exports are loaded on first use, so a worker process that imports only ``lesioncount.batch.worker``
never pays for pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "Manifest": "manifest",
    "ManifestError": "manifest",
    "read_manifest": "manifest",
    "validate_manifest": "manifest",
    "ModelKey": "store",
    "Record": "store",
    "ResultStore": "store",
    "Outcome": "tables",
    "build_tables": "tables",
    "write_tables": "tables",
    "PipelineScorer": "worker",
    "RunReport": "run",
    "run_batch": "run",
    "score_manifest": "run",
}

__all__ = [
    "Manifest",
    "ManifestError",
    "ModelKey",
    "Outcome",
    "PipelineScorer",
    "Record",
    "ResultStore",
    "RunReport",
    "build_tables",
    "read_manifest",
    "run_batch",
    "score_manifest",
    "validate_manifest",
    "write_tables",
]

if TYPE_CHECKING:
    from lesioncount.batch.manifest import Manifest, ManifestError, read_manifest, validate_manifest
    from lesioncount.batch.run import RunReport, run_batch, score_manifest
    from lesioncount.batch.store import ModelKey, Record, ResultStore
    from lesioncount.batch.tables import Outcome, build_tables, write_tables
    from lesioncount.batch.worker import PipelineScorer


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"lesioncount.batch.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'lesioncount.batch' has no attribute {name!r}")
