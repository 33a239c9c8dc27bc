"""Clinician corrections of the model's marks, as pure functions on lists of mark dicts.

A mark is a lesion in schema-v1 form (``Lesion.to_dict``) plus a stable ``id`` and its ``source``
(``model`` or ``manual``). Each correction returns a new list; the caller stores it as a new version.
"""

from __future__ import annotations

from typing import Any

from lesioncount.count import count_by_class, count_by_region
from lesioncount.types import CLASSES, REGIONS, Lesion

#: Radius (photo pixels) of a mark a clinician adds by clicking, unless the click says otherwise.
DEFAULT_MANUAL_RADIUS_PX = 12.0


class MarkError(ValueError):
    """A correction does not fit the marks it was meant for."""


def marks_from_result(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The model's lesions (a CountResult dict) as the first list of marks."""
    return [{**les, "id": f"m{i}", "source": "model"} for i, les in enumerate(result.get("lesions", []), start=1)]


def lesions_of(marks: list[dict[str, Any]]) -> list[Lesion]:
    return [Lesion.from_dict(m) for m in marks]


def counts_of(marks: list[dict[str, Any]]) -> dict[str, int]:
    """Counts per class plus ``total_acne``, from the marks as they now stand."""
    return count_by_class(lesions_of(marks))


def counts_by_region_of(marks: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    return count_by_region(lesions_of(marks))


def hayashi_of(marks: list[dict[str, Any]], result: dict[str, Any] | None) -> int | None:
    """The Hayashi grade of the marks as they now stand, by the counting core's rule for the photo's face
    (the worse half of a frontal face, the half face of a lateral one); None where the model gave none."""
    if not result or not (result.get("grades") or {}).get("hayashi"):
        return None
    from lesioncount.pipeline import grade_block
    from lesioncount.types import CountResult

    block = grade_block(lesions_of(marks), CountResult.from_dict(result).face)
    h = block.get("hayashi")
    return int(h["grade"]) if isinstance(h, dict) else None


def _next_id(marks: list[dict[str, Any]]) -> str:
    used = [int(m["id"][1:]) for m in marks if str(m.get("id", "")).startswith("m") and m["id"][1:].isdigit()]
    return f"m{max(used, default=0) + 1}"


def _find(marks: list[dict[str, Any]], mark_id: str) -> int:
    for i, m in enumerate(marks):
        if m.get("id") == mark_id:
            return i
    raise MarkError(f"no mark {mark_id!r} on this photo (reload the page: someone may have changed it)")


def _check_class(cls: str) -> None:
    if cls not in CLASSES:
        raise MarkError(f"unknown class {cls!r}; choose one of {', '.join(CLASSES)}")


def apply_change(
    marks: list[dict[str, Any]],
    change: dict[str, Any],
    *,
    width: int,
    height: int,
    used_ids: set[str] | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """Apply one correction; returns the new marks and a one-line description of the change.

    Args:
        marks: the current marks (not modified).
        change: ``{"op": "add", "cls", "x", "y", ["region", "radius_px"]}``, ``{"op": "remove", "id"}`` or
            ``{"op": "reclassify", "id", "cls"}``.
        width: photo width in pixels (an added mark must lie on the photo).
        height: photo height in pixels.
        used_ids: ids any version of the photo has used; a new mark never takes one of them, so that an
            id in the history always means one mark (after an undo too).

    Raises:
        MarkError: unknown op, class, region or mark id, or a point off the photo.
    """
    op = change.get("op")
    out = [dict(m) for m in marks]
    if op == "add":
        cls = str(change.get("cls", ""))
        _check_class(cls)
        try:
            x, y = float(change["x"]), float(change["y"])
            r = float(change.get("radius_px") or DEFAULT_MANUAL_RADIUS_PX)
        except (KeyError, TypeError, ValueError) as e:
            raise MarkError("an added mark needs numeric x and y") from e
        if not (0 <= x < width and 0 <= y < height):
            raise MarkError(f"({x:.0f}, {y:.0f}) is not on the {width}x{height} photo")
        if not r > 0:
            raise MarkError("a mark's radius must be positive")
        r = min(r, min(width, height) / 2)
        region = str(change.get("region") or "other")
        if region not in REGIONS:
            raise MarkError(f"unknown region {region!r}; choose one of {', '.join(REGIONS)}")
        new_id = _next_id(out + [{"id": i} for i in used_ids or ()])
        out.append(
            {
                **Lesion(cls, x, y, 3.14159 * r * r, (x - r, y - r, 2 * r, 2 * r), 1.0, region).to_dict(),
                "id": new_id,
                "source": "manual",
            }
        )
        return out, f"added {cls} {new_id} at ({x:.0f}, {y:.0f})"
    if op == "remove":
        i = _find(out, str(change.get("id")))
        gone = out.pop(i)
        return out, f"removed {gone['class']} {gone['id']}"
    if op == "reclassify":
        cls = str(change.get("cls", ""))
        _check_class(cls)
        i = _find(out, str(change.get("id")))
        old = out[i]["class"]
        if old == cls:
            raise MarkError(f"mark {out[i]['id']} is already {cls}")
        out[i]["class"] = cls
        return out, f"reclassified {out[i]['id']} {old} -> {cls}"
    raise MarkError(f"unknown correction {op!r}; use add, remove, reclassify or revert")
