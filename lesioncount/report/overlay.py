"""Draw lesions on a photo: a ring per lesion, coloured by class, and a legend with the counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import cv2
import numpy as np
import numpy.typing as npt

from lesioncount.types import CLASSES, Lesion

#: RGB colour per class (distinguishable for the common colour-vision deficiencies).
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "inflammatory": (230, 40, 40),
    "comedone": (30, 120, 255),
    "scar": (255, 200, 0),
}
#: Colour of the expert-style marks (``CountResult.expert_marks``): small dots, not rings, so that they
#: read as a second layer beside the counted lesions.
EXPERT_COLOUR: tuple[int, int, int] = (255, 255, 255)


def draw_overlay(
    image: npt.NDArray[np.uint8],
    lesions: Iterable[Lesion],
    *,
    counts: Mapping[str, int] | None = None,
    face_box: tuple[int, int, int, int] | None = None,
    max_side_px: int | None = 2000,
    expert_marks: Iterable[Lesion] = (),
) -> npt.NDArray[np.uint8]:
    """A copy of ``image`` with every lesion marked and a legend.

    Args:
        image: HxWx3 uint8 RGB (not modified).
        lesions: lesions in the image's pixel coordinates.
        counts: class -> count for the legend (counted from ``lesions`` when None).
        face_box: draw the face box too.
        max_side_px: shrink the result so its longer side is at most this (None keeps full size).
        expert_marks: where dermatologists would mark acne (``CountResult.expert_marks``): a dot each, and
            a legend line with their number (none when empty).

    Returns:
        The marked image (uint8 RGB), possibly smaller than the input.
    """
    lesions = list(lesions)
    h, w = image.shape[:2]
    f = min(1.0, max_side_px / max(h, w)) if max_side_px else 1.0
    out = cv2.resize(image, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA) if f < 1 else image.copy()
    thick = max(1, round(max(out.shape[:2]) / 800))
    if face_box is not None:
        x, y, bw, bh = (round(v * f) for v in face_box)
        cv2.rectangle(out, (x, y), (x + bw, y + bh), (255, 255, 255), thick)
    experts = list(expert_marks)
    for m in experts:
        centre = (round(m.x * f), round(m.y * f))
        cv2.circle(out, centre, 2 * thick + 1, (0, 0, 0), -1, cv2.LINE_AA)
        cv2.circle(out, centre, 2 * thick, EXPERT_COLOUR, -1, cv2.LINE_AA)
    for les in lesions:
        r = max(4 * thick, round(0.6 * max(les.bbox[2], les.bbox[3]) * f))
        cv2.circle(
            out,
            (round(les.x * f), round(les.y * f)),
            r,
            CLASS_COLOURS.get(les.cls, (255, 255, 255)),
            thick,
            cv2.LINE_AA,
        )
    if counts is None:
        counts = {c: sum(1 for les in lesions if les.cls == c) for c in CLASSES}
    scale = max(0.5, max(out.shape[:2]) / 1600)
    line_h = round(28 * scale)
    pad = round(8 * scale)
    lines = [(f"{c}: {counts.get(c, 0)}", CLASS_COLOURS[c]) for c in CLASSES]
    if experts:  # a different kind of number: said, so that staff do not read it as a count
        lines.append((f"expert-style, not counted: {len(experts)}", EXPERT_COLOUR))
    widest = max(
        cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, max(1, round(1.5 * scale)))[0][0] for t, _ in lines
    )
    box_w = min(out.shape[1] - pad, max(round(260 * scale), pad * 6 + widest))
    box_h = pad * 2 + line_h * len(lines)
    roi = out[pad : pad + box_h, pad : pad + box_w]
    roi[:] = (roi * 0.35).astype(np.uint8)
    for i, (text, colour) in enumerate(lines):
        y = pad + pad + line_h * i + line_h // 2
        cv2.circle(out, (pad * 3, y), round(8 * scale), colour, -1, cv2.LINE_AA)
        cv2.putText(
            out,
            text,
            (pad * 5, y + round(8 * scale)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.7 * scale,
            (255, 255, 255),
            max(1, round(1.5 * scale)),
            cv2.LINE_AA,
        )
    return out
