"""Simulated re-takes of a photo: the small changes between two shots of one unchanged face.

A re-take is rotated (up to ``max_rotation_deg``), zoomed about the centre (``zoom``), exposed
differently (``stops``, in linear light) and saved again as JPEG (``jpeg_quality``). The test-retest
figures of the face stage and of the lesion model are measured on these.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from lesioncount.synth import change_exposure


@dataclass(frozen=True)
class Retake:
    """One simulated re-take: the image, and how it was made."""

    image: npt.NDArray[np.uint8]
    matrix: npt.NDArray[np.float64]
    rotation_deg: float
    zoom: float
    stops: float


def retake(
    image: npt.NDArray[np.uint8],
    rng: np.random.Generator | int | None = None,
    *,
    max_rotation_deg: float = 3.0,
    zoom: tuple[float, float] = (1.04, 1.12),
    max_stops: float = 0.3,
    jpeg_quality: int = 90,
) -> Retake:
    """A re-take of ``image`` (HxWx3 uint8 RGB): rotation, zoom, exposure and JPEG, drawn from ``rng``.

    Returns:
        The re-take; ``matrix`` (2x3) maps original pixels to re-take pixels.
    """
    rng = np.random.default_rng(rng)
    h, w = image.shape[:2]
    rot = float(rng.uniform(-max_rotation_deg, max_rotation_deg))
    z = float(rng.uniform(*zoom))
    stops = float(rng.uniform(-max_stops, max_stops))
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), rot, z).astype(np.float64)
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    out = change_exposure(out, stops)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return Retake(decoded, m, rot, z, stops)
