"""One patient's visits: the ``Visit`` value, the per-patient manifest (YAML or CSV) and photo dates.

A manifest lists one row per photo: ``date`` (ISO ``YYYY-MM-DD``; read from the photo's EXIF when left
out), ``view`` (``front``/``left``/``right``; guessed by the face finder when left out), ``path`` (relative
to the manifest), and optionally ``age`` (years, at that visit), ``treatment`` (free text such as
``botulinum toxin 20 U forehead``) and ``counts`` (a saved ``lesioncount count`` JSON, so the photo is not
counted again). YAML may also give ``patient``, ``age`` and ``birth_date`` once at the top::

    patient: P-0042
    birth_date: 2001-05-14
    visits:
      - {date: 2026-01-12, view: front, path: 2026-01-12_front.jpg, treatment: botulinum toxin 20 U}
      - {date: 2026-03-10, view: front, path: 2026-03-10_front.jpg}

CSV: a header row with the same column names.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml
from PIL import Image, UnidentifiedImageError

from lesioncount.types import VIEWS, CountResult

_KEYS = {"date", "view", "path", "age", "treatment", "counts", "label"}


class ManifestError(ValueError):
    """A manifest cannot be used; the message names the file, the row and the fix."""


@dataclass(frozen=True)
class VisitRecord:
    """One manifest row (paths resolved against the manifest's folder)."""

    path: str
    date: dt.date | None = None
    view: str | None = None
    age_years: float | None = None
    treatment: str | None = None
    counts_path: str | None = None
    label: str = ""


@dataclass(frozen=True, eq=False)
class Visit:
    """One photo of one visit, counted.

    Attributes:
        result: the photo's count result (lesion coordinates in ``image`` pixels).
        image: HxWx3 uint8 RGB photo, or None (then no registration, matching or photo measures).
        date: visit date, or None.
        view: ``front``, ``left`` or ``right``.
        age_years: patient age at the visit, or None.
        treatment: treatment given at this visit (free text), or None.
        label: a short name for reports (the date or file name by default).
        skin_mask: HxW bool skin of ``image`` for the photo measures (found by ``lesioncount.face`` when None).
        recount: when the comparison is given a counter, this follow-up may be counted again in its
            baseline's frame; False keeps its count as it is (a clinician's corrected marks stand).
    """

    result: CountResult
    image: npt.NDArray[np.uint8] | None = None
    date: dt.date | None = None
    view: str = "front"
    age_years: float | None = None
    treatment: str | None = None
    label: str = ""
    skin_mask: npt.NDArray[np.bool_] | None = None
    recount: bool = True

    @property
    def name(self) -> str:
        """The label, else the date, else the photo's file name."""
        if self.label:
            return self.label
        if self.date is not None:
            return self.date.isoformat()
        return Path(self.result.image.path).name


def parse_date(value: Any, where: str = "") -> dt.date | None:
    """A date from ``YYYY-MM-DD`` (or a YAML date, or an EXIF ``YYYY:MM:DD hh:mm:ss``); None for empty."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%Y:%m:%d %H:%M:%S", "%Y:%m:%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(text[: len(dt.datetime(2000, 1, 1).strftime(fmt))], fmt).date()
        except ValueError:
            continue
    raise ManifestError(f"{where}bad date {text!r}: write it as YYYY-MM-DD")


def photo_date(path: str | os.PathLike[str]) -> dt.date | None:
    """The date a photo was taken, from EXIF DateTimeOriginal (else DateTime); None when absent."""
    try:
        with Image.open(path) as im:
            exif = im.getexif()
            raw = exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132)
    except (OSError, UnidentifiedImageError):
        return None
    if not raw:
        return None
    try:
        return parse_date(str(raw).strip("\x00 "))
    except ManifestError:
        return None


def _age(value: Any, where: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        age = float(value)
    except (TypeError, ValueError):
        raise ManifestError(f"{where}age {value!r} is not a number of years") from None
    if not 0 <= age < 130:
        raise ManifestError(f"{where}age {age:g} is out of range (0-130 years)")
    return age


def _record(row: dict[str, Any], base: Path, where: str, defaults: dict[str, Any]) -> VisitRecord:
    unknown = set(row) - _KEYS
    if unknown:
        import difflib

        bad = sorted(unknown)[0]
        near = difflib.get_close_matches(bad, sorted(_KEYS), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else f"; known columns: {', '.join(sorted(_KEYS))}"
        raise ManifestError(f"{where}unknown column {bad!r}{hint}")
    if not row.get("path"):
        raise ManifestError(f"{where}no path: every row needs the photo's path")
    view = (str(row["view"]).strip().lower() or None) if row.get("view") not in (None, "") else None
    if view is not None and view not in VIEWS:
        raise ManifestError(f"{where}view {view!r} is not one of {', '.join(VIEWS)}")
    date = parse_date(row.get("date"), where)
    age = _age(row.get("age"), where)
    if age is None and defaults.get("birth_date") is not None and date is not None:
        age = (date - defaults["birth_date"]).days / 365.25
    elif age is None:
        age = defaults.get("age")
    counts = row.get("counts") or None
    return VisitRecord(
        path=str(base / str(row["path"])),
        date=date,
        view=view,
        age_years=age,
        treatment=(str(row["treatment"]).strip() or None) if row.get("treatment") not in (None, "") else None,
        counts_path=str(base / str(counts)) if counts else None,
        label=str(row.get("label") or ""),
    )


def read_manifest(path: str | os.PathLike[str]) -> list[VisitRecord]:
    """Read a per-patient manifest (``.yaml``/``.yml`` or ``.csv``).

    Raises:
        ManifestError: the file is missing or malformed; the message names the row and the fix.
    """
    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"{p}: no such manifest")
    base = p.parent
    defaults: dict[str, Any] = {}
    if p.suffix.lower() == ".csv":
        with open(p, newline="", encoding="utf-8-sig") as f:
            rows: list[Any] = [dict(r) for r in csv.DictReader(f)]
    elif p.suffix.lower() in (".yaml", ".yml"):
        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ManifestError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from e
        if isinstance(doc, dict):
            rows = doc.get("visits") or []
            defaults["age"] = _age(doc.get("age"), f"{p}: ")
            defaults["birth_date"] = parse_date(doc.get("birth_date"), f"{p}: ")
        else:
            rows = doc or []
    else:
        raise ManifestError(f"{p}: a manifest must be .yaml, .yml or .csv")
    if not isinstance(rows, list) or not rows:
        raise ManifestError(f"{p}: no visits listed (YAML: a `visits:` list; CSV: one row per photo)")
    out = []
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ManifestError(f"{p}: visit {i} is not a mapping of column -> value")
        out.append(_record({k: v for k, v in row.items() if k is not None}, base, f"{p}: visit {i}: ", defaults))
    return out


def order_visits(visits: Iterable[Visit]) -> list[Visit]:
    """Visits sorted by date (stable; when any date is missing the given order is kept)."""
    vs = list(visits)
    if all(v.date is not None for v in vs):
        vs.sort(key=lambda v: v.date)  # type: ignore[arg-type, return-value]
    return vs


def load_visits(
    records: Iterable[VisitRecord],
    count: Callable[[npt.NDArray[np.uint8], str], CountResult] | None = None,
    *,
    skin: Callable[[npt.NDArray[np.uint8]], tuple[npt.NDArray[np.bool_], str]] | None = None,
) -> list[Visit]:
    """Read each record's photo, count it (or read its saved counts) and make ``Visit`` values.

    Args:
        records: manifest rows.
        count: ``(image, path) -> CountResult`` for photos without saved counts (e.g. ``LesionCounter.count``).
        skin: ``image -> (skin mask, view)``; defaults to ``lesioncount.face.analyse_face``.

    Returns:
        Visits in date order.

    Raises:
        ManifestError: a photo has neither saved counts nor a counter, or saved counts do not fit the photo.
    """
    from lesioncount.io import read_image

    if skin is None:

        def skin(image: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.bool_], str]:
            import cv2

            from lesioncount.face import analyse_face

            # Photo measures run at about 1200 px, so the face is analysed there and the mask scaled back.
            s = min(1.0, 1200 / max(image.shape[:2]))
            small = image
            if s < 1.0:
                small = np.asarray(cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA), np.uint8)
            fa = analyse_face(small)
            size = (image.shape[1], image.shape[0])
            mask = cv2.resize(fa.skin.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
            return mask, fa.view

    out = []
    for rec in records:
        image = read_image(rec.path)
        if rec.counts_path is not None:
            import json

            result = CountResult.from_dict(json.loads(Path(rec.counts_path).read_text(encoding="utf-8")))
            if (result.image.width, result.image.height) != (image.shape[1], image.shape[0]):
                raise ManifestError(
                    f"{rec.counts_path}: counts are for a {result.image.width}x{result.image.height} photo but "
                    f"{rec.path} is {image.shape[1]}x{image.shape[0]}; count the photo again"
                )
        elif count is not None:
            result = count(image, rec.path)
        else:
            raise ManifestError(f"{rec.path}: no saved counts and no model to count with")
        mask, guessed_view = skin(image)
        view = rec.view or (result.face.view if result.face.view in VIEWS else guessed_view)
        date = rec.date if rec.date is not None else photo_date(rec.path)
        visit = Visit(
            result=result,
            image=image,
            date=date,
            view=view if view in VIEWS else "front",
            age_years=rec.age_years,
            treatment=rec.treatment,
            label=rec.label,
            skin_mask=mask,
        )
        out.append(visit)
    return order_visits(out)
