"""The output folder of ``lesioncount count``: stable result names, a summary kept true to the JSONs.

Names: a photo found in a folder argument is named by its path relative to that folder, a photo given
explicitly by its file name; its result is ``OUT/<name>.json`` (``photos/a/visit.jpg`` counted as
``photos`` -> ``OUT/a/visit.jpg.json``). The extension stays in the name, so ``visit.jpg`` and
``visit.png`` never share a result, and a name never depends on which other photos are counted. Two
photos that would still share a name (two folder arguments holding the same relative path) are refused
before anything is counted.

``summary.csv`` has one row per result JSON in the folder, from earlier runs too, and is rewritten as
each result is written (every few seconds past 5,000 rows), so after a kill its rows still agree with
the JSONs. ``failures.csv`` lists the photos of the last run that could not be counted.
"""

from __future__ import annotations

import csv
import hashlib
import io as _io
import json
import os
import time
from pathlib import Path
from typing import Any

from lesioncount.io import atomic_path, show_path, write_text
from lesioncount.types import CLASSES, COUNT_KEYS, TOTAL_ACNE

#: summary.csv columns, in order.
SUMMARY_COLUMNS = (
    "result",
    "path",
    *COUNT_KEYS,
    "acne_expected",
    "acne_expert_marks",
    "hayashi_grade",
    "gags",
    "face_found",
    "view",
    "n_warnings",
    "model",
    "model_sha256",
    "thresholds",
)
#: Longest file-name component we write (bytes); longer names are shortened with a hash, stably.
MAX_NAME_BYTES = 240
#: Past this many rows the summary is rewritten at most every ``SLOW_FLUSH_S`` seconds.
FAST_FLUSH_ROWS, SLOW_FLUSH_S = 5000, 5.0


class OutputError(ValueError):
    """The output folder cannot be used, or two photos would share a result; one line says which."""


def file_as_folder(out: Path) -> str | None:
    """The message when ``--out`` names a file (checked before any work, and before the folder is made)."""
    return f"--out {show_path(out)} is a file, not a folder" if out.exists() and not out.is_dir() else None


def check_output_folder(out: Path) -> None:
    """Create ``out`` if needed and prove that files can be written in it.

    Raises:
        OutputError: ``out`` is a file, cannot be created, or is not writable.
    """
    problem = file_as_folder(out)
    if problem:
        raise OutputError(problem)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / ".lc-probe.json") as tmp:
            tmp.write_bytes(b"{}")
        (out / ".lc-probe.json").unlink()
    except OSError as e:
        raise OutputError(f"cannot write in --out {show_path(out)}: {e.strerror or e}") from e


def _short(component: str) -> str:
    """A file-name component that fits the file system; a long one keeps its start and gains a hash."""
    raw = os.fsencode(component)
    if len(raw) <= MAX_NAME_BYTES:
        return component
    digest = hashlib.sha256(raw).hexdigest()[:12]
    head = os.fsdecode(raw[: MAX_NAME_BYTES - 13])
    return f"{head}~{digest}"


def result_names(names: list[str], photos: list[Path]) -> list[str]:
    """``<name>.json`` result paths (relative to OUT) for the photos' names from ``io.scan_inputs``.

    Raises:
        OutputError: two photos would write the same result (compared without case, for macOS and Windows).
    """
    out: list[str] = []
    owner: dict[str, Path] = {}
    for name, photo in zip(names, photos, strict=True):
        parts = [_short(p) for p in Path(name).parts[:-1]] + [_short(Path(name).name + ".json")]
        rel = "/".join(parts)
        key = rel.lower()
        if key in owner:
            raise OutputError(
                f"{show_path(owner[key])} and {show_path(photo)} would both write OUT/{show_path(rel)}: "
                "count them into separate --out folders, or give their common parent folder"
            )
        owner[key] = photo
        out.append(rel)
    return out


def _row(rel: str, d: dict[str, Any]) -> list[Any]:
    """A summary row from a result JSON's dict."""
    grades = d.get("grades") or {}
    hay, gags = grades.get("hayashi"), grades.get("gags")
    model = d.get("model") or {}
    face = d.get("face") or {}
    counts = d.get("counts") or {}
    thresholds = model.get("thresholds")
    return [
        rel,
        (d.get("image") or {}).get("path", ""),
        *(counts.get(c, "") for c in CLASSES),
        counts.get(TOTAL_ACNE, ""),
        "" if d.get("acne_expected") is None else d["acne_expected"],
        len(d["expert_marks"]) if d.get("expert_marks") else "",
        hay["grade"] if hay else "",
        gags["score"] if gags else "",
        face.get("found", ""),
        face.get("view", ""),
        len((d.get("quality") or {}).get("warnings", [])),
        f"{model.get('name', '')} {model.get('version', '')}".strip(),
        model.get("sha256", ""),
        json.dumps(thresholds, sort_keys=True) if thresholds else "",
    ]


class Summary:
    """``summary.csv`` of an output folder, rebuilt from its result JSONs and kept current."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.rows: dict[str, list[Any]] = {}
        self._last_flush = 0.0
        for jp in sorted(out.rglob("*.json")):
            if jp.name.startswith("."):
                continue
            try:
                d = json.loads(jp.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(d, dict) and "counts" in d and "image" in d:
                self.rows[jp.relative_to(out).as_posix()] = _row(jp.relative_to(out).as_posix(), d)

    def add(self, rel: str, result: dict[str, Any]) -> None:
        """Record a result just written to ``OUT/rel``, and rewrite the summary when due."""
        self.rows[rel] = _row(rel, result)
        if len(self.rows) <= FAST_FLUSH_ROWS or time.monotonic() - self._last_flush >= SLOW_FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Write ``summary.csv`` atomically (undecodable file-name bytes escaped)."""
        buf = _io.StringIO()
        w = csv.writer(buf)
        w.writerow(SUMMARY_COLUMNS)
        for rel in sorted(self.rows):
            w.writerow(self.rows[rel])
        write_text(self.out / "summary.csv", buf.getvalue())
        self._last_flush = time.monotonic()


def write_failures(out: Path, failures: list[tuple[Path, str]]) -> None:
    """``failures.csv``: the photos of the last run that could not be counted, and why (removed when none)."""
    path = out / "failures.csv"
    if not failures:
        path.unlink(missing_ok=True)
        return
    buf = _io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "reason"])
    for photo, why in failures:
        w.writerow([str(photo), why])
    write_text(path, buf.getvalue())
