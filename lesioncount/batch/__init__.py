"""Batch scoring of trial datasets: manifest -> resumable results store -> statistician's tables.

``run_batch`` does what ``lesioncount score`` does; the pieces are usable on their own:
``read_manifest`` (validation), ``ResultStore`` (crash-safe SQLite), ``score_manifest`` (local pool or
Dask), ``build_tables``/``write_tables``. Needs the ``batch`` extra (pandas, pyarrow, dask[distributed]).
"""

from lesioncount.batch.manifest import Manifest, ManifestError, read_manifest, validate_manifest
from lesioncount.batch.run import PipelineScorer, RunReport, run_batch, score_manifest
from lesioncount.batch.store import ModelKey, Record, ResultStore
from lesioncount.batch.tables import Outcome, build_tables, write_tables

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
