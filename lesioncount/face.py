"""Face box, view, the skin to count on, and facial regions (OpenCV only, no model download).

The face box comes from OpenCV's Haar cascades (frontal, then profile both ways), which ship inside the
``opencv-python-headless`` 4.x wheel (BSD-3-Clause, Intel). Without a landmark model, skin and regions
come from the face box geometry plus a skin-colour model learnt from the cheeks of the same photo:

- skin = inside the face ellipse, colour close to the cheeks' (Lab Mahalanobis distance), minus the
  eye/brow band and the lips for frontal views; small holes (lesions are redder than skin) are filled back.
- regions (frontal): forehead (top band), nose (central column), chin (bottom centre), left and right
  cheek (the patient's own: the patient's left cheek is on the image's right), the rest ``other``.
  Lateral views: forehead, chin, the visible cheek, ``other``.

With no face found the whole frame is used and a warning says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

from lesioncount.types import REGIONS

log = logging.getLogger(__name__)

#: Detection runs on a copy whose long side is at most this (speed; Haar needs no more).
DETECT_LONG_SIDE_PX = 640
#: Skin and regions are worked out on a copy whose long side is at most this, then enlarged (speed).
ANALYSIS_LONG_SIDE_PX = 1024


@dataclass(frozen=True)
class FaceAnalysis:
    """Face, skin and regions of one photo, at the resolution of the image analysed.

    Attributes:
        found: a face was detected.
        box: ``(x, y, w, h)`` face box, or None.
        method: detector name, or ``none``.
        view: ``front``, ``left``, ``right`` (the patient's side facing the camera) or ``unknown``.
        skin: HxW bool, where lesions are counted.
        regions: HxW uint8, index into ``REGIONS`` (meaningful where ``skin``).
        warnings: plain-language problems found.
    """

    found: bool
    box: tuple[int, int, int, int] | None
    method: str
    view: str
    skin: npt.NDArray[np.bool_]
    regions: npt.NDArray[np.uint8]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def skin_fraction(self) -> float:
        return float(self.skin.mean()) if self.skin.size else 0.0

    def region_at(self, x: float, y: float) -> str:
        """Region name at a pixel (``other`` off the map)."""
        h, w = self.regions.shape
        ix, iy = int(x), int(y)
        if 0 <= ix < w and 0 <= iy < h:
            return REGIONS[int(self.regions[iy, ix])]
        return "other"


@lru_cache(maxsize=4)
def _cascade(name: str) -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + name
    c = cv2.CascadeClassifier(path)
    if c.empty():
        raise RuntimeError(f"OpenCV cascade {name} not found at {path}; install opencv-python-headless<5")
    return c


def counting_area(face: FaceAnalysis, tolerance: float = 0.15) -> npt.NDArray[np.bool_]:
    """Where lesions are counted: the skin grown by ``tolerance`` x the face-box height.

    The skin mask follows skin colour, and lesions (redder or darker than skin) and the skin beside
    them can fall just outside it; growing it keeps them, while hair, background and the eyes' centres
    stay out. Without a face the whole frame is counted.
    """
    if face.box is None:
        return face.skin
    r = tolerance * face.box[3]
    # Distance to the nearest skin pixel: linear time whatever the radius (a large dilation kernel is not).
    dist = cv2.distanceTransform((~face.skin).astype(np.uint8), cv2.DIST_L2, 3)
    return dist <= r


def detect_face(image: npt.NDArray[np.uint8]) -> tuple[tuple[int, int, int, int] | None, str, str]:
    """The largest face box in full-image pixels, the detector's name, and the view.

    Args:
        image: HxWx3 uint8 RGB.

    Returns:
        ``(box or None, method, view)``.
    """
    h, w = image.shape[:2]
    f = min(1.0, DETECT_LONG_SIDE_PX / max(h, w))
    small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    min_side = max(24, int(0.2 * min(gray.shape)))
    tries = (
        ("haar-frontal", "haarcascade_frontalface_default.xml", False, "front"),
        # OpenCV's profile cascade finds faces turned towards the image's left: the patient's right side.
        ("haar-profile", "haarcascade_profileface.xml", False, "right"),
        ("haar-profile-flipped", "haarcascade_profileface.xml", True, "left"),
    )
    for method, name, flip, view in tries:
        g = cv2.flip(gray, 1) if flip else gray
        found, _, weights = _cascade(name).detectMultiScale3(
            g, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side), outputRejectLevels=True
        )
        if len(found):
            # The most confident detection, not the largest: a large false positive (a badge, a pattern)
            # must not win over the face.
            x, y, bw, bh = found[int(np.argmax(np.asarray(weights).ravel()))]
            if flip:
                x = g.shape[1] - x - bw
            box = (int(x / f), int(y / f), int(bw / f), int(bh / f))
            return box, method, view
    return None, "none", "unknown"


def _skin_colour_mask(
    image: npt.NDArray[np.uint8], samples: list[tuple[slice, slice]], max_distance: float = 3.5
) -> npt.NDArray[np.bool_]:
    """Pixels whose Lab colour is within ``max_distance`` (Mahalanobis, a*/b*) of the sampled skin."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    pix = np.concatenate([lab[s].reshape(-1, 3) for s in samples if lab[s].size], axis=0)
    if len(pix) < 20:
        return np.ones(image.shape[:2], bool)
    mean = pix.mean(0)
    # Lightness varies more across a face (shading) than chroma does: weight it down by widening its variance.
    cov = np.cov(pix.T) + np.diag([64.0, 4.0, 4.0])  # floors: a flat sample must not give a razor-thin model
    cov[0, :] *= 1.5
    cov[:, 0] *= 1.5
    inv = np.linalg.inv(cov)
    d = lab - mean.astype(np.float32)
    d0, d1, d2 = d[..., 0], d[..., 1], d[..., 2]
    i = inv.astype(np.float32)
    m2 = (
        i[0, 0] * d0 * d0
        + i[1, 1] * d1 * d1
        + i[2, 2] * d2 * d2
        + 2 * (i[0, 1] * d0 * d1 + i[0, 2] * d0 * d2 + i[1, 2] * d1 * d2)
    )
    # Lesions are redder than skin: allow extra redness (a*) as long as lightness stays skin-like.
    d_l = d[..., 0] / np.sqrt(cov[0, 0])
    redder = (d[..., 1] > 0) & (np.abs(d_l) < max_distance) & (m2 < (max_distance * 2.5) ** 2)
    return (m2 < max_distance**2) | redder


def _smooth_mask(
    image: npt.NDArray[np.uint8], samples: list[tuple[slice, slice]], window_px: int, factor: float = 3.0
) -> npt.NDArray[np.bool_]:
    """Pixels whose local edge density is skin-like; hair and brows are full of fine strands."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mag = np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    density = cv2.blur(mag, (window_px, window_px))
    ref = np.concatenate([density[s].ravel() for s in samples if density[s].size])
    if ref.size == 0:
        return np.ones(image.shape[:2], bool)
    return density <= factor * max(float(np.median(ref)), 4.0)


def _fill_small_holes(mask: npt.NDArray[np.bool_], max_hole_px: int) -> npt.NDArray[np.bool_]:
    inv = (~mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    small = np.zeros(n, bool)
    small[1:] = stats[1:, cv2.CC_STAT_AREA] <= max_hole_px
    # Holes touching the border are background, not holes.
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    small[border] = False
    return mask | small[labels]


def analyse_face(image: npt.NDArray[np.uint8]) -> FaceAnalysis:
    """Find the face, the skin to count on and the facial regions.

    Args:
        image: HxWx3 uint8 RGB.

    Returns:
        The analysis at the image's resolution.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8 RGB, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    f = min(1.0, ANALYSIS_LONG_SIDE_PX / max(h, w))
    if f == 1.0:
        return _analyse(image)
    small = _analyse(cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA))
    return resize_analysis(small, (h, w))


def resize_analysis(face: FaceAnalysis, shape_hw: tuple[int, int]) -> FaceAnalysis:
    """The same analysis for the same photo at another size (masks by nearest neighbour, box scaled)."""
    h, w = shape_hw
    f = w / face.skin.shape[1]
    box = None
    if face.box is not None:
        bx, by, bw, bh = (int(round(v * f)) for v in face.box)
        box = (bx, by, bw, bh)
    skin = cv2.resize(face.skin.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    regions = cv2.resize(face.regions, (w, h), interpolation=cv2.INTER_NEAREST)
    return FaceAnalysis(face.found, box, face.method, face.view, skin, regions, face.warnings)


def _analyse(image: npt.NDArray[np.uint8]) -> FaceAnalysis:
    h, w = image.shape[:2]
    box, method, view = detect_face(image)
    regions = np.full((h, w), REGIONS.index("other"), np.uint8)
    if box is None:
        # A close-up (a cheek, say) or a face the detector missed: count everywhere rather than guess.
        notes = ("no face found: counting on the whole frame at the frame's scale (close-up assumed)",)
        return FaceAnalysis(False, None, method, view, np.ones((h, w), bool), regions, notes)

    # Work only in the window around the face ellipse: everything outside is not skin.
    x, y, bw, bh = box
    rx0, rx1 = max(0, int(x + bw / 2 - 0.56 * bw)), min(w, int(x + bw / 2 + 0.56 * bw) + 1)
    ry0, ry1 = max(0, int(y - 0.12 * bh)), min(h, int(y + 1.12 * bh) + 1)
    sub_skin, sub_regions, warnings = _face_masks(image[ry0:ry1, rx0:rx1], (x - rx0, y - ry0, bw, bh), view)
    skin = np.zeros((h, w), bool)
    skin[ry0:ry1, rx0:rx1] = sub_skin
    regions[ry0:ry1, rx0:rx1] = sub_regions
    return FaceAnalysis(True, box, method, view, skin, regions, warnings)


def _face_masks(
    image: npt.NDArray[np.uint8], box: tuple[int, int, int, int], view: str
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.uint8], tuple[str, ...]]:
    """Skin mask, region map and warnings inside a window around the face (``box`` in window pixels)."""
    h, w = image.shape[:2]
    x, y, bw, bh = box
    regions = np.full((h, w), REGIONS.index("other"), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xx - (x + bw / 2)) / bw  # -0.5 .. 0.5 across the box
    v = (yy - y) / bh  # 0 at the box top, 1 at its bottom
    # The Haar box runs from mid-forehead to the lower lip; the face ellipse reaches above and below it.
    ellipse = (u / 0.54) ** 2 + ((v - 0.5) / 0.6) ** 2 <= 1.0

    def window(v0: float, v1: float, u0: float, u1: float) -> tuple[slice, slice]:
        return (
            slice(max(0, y + int(v0 * bh)), max(0, y + int(v1 * bh))),
            slice(max(0, x + int(u0 * bw)), max(0, x + int(u1 * bw))),
        )

    samples = [window(0.5, 0.65, 0.18, 0.32), window(0.5, 0.65, 0.68, 0.82), window(0.02, 0.14, 0.35, 0.65)]
    if view != "front":
        samples = [window(0.35, 0.7, 0.3, 0.7)]
    colour = _skin_colour_mask(image, samples)
    skin = ellipse & colour & (v <= 1.08) & _smooth_mask(image, samples, window_px=max(5, bw // 12))
    if view == "front":
        eyes = (np.abs(np.abs(u) - 0.19) < 0.16) & (v > 0.17) & (v < 0.45)
        lips = (np.abs(u) < 0.2) & (v > 0.7) & (v < 0.9)
        nostrils = (np.abs(u) < 0.12) & (v > 0.6) & (v < 0.7)
        skin &= ~(eyes | lips | nostrils)
    skin = _fill_small_holes(skin, max_hole_px=int(0.0015 * bw * bh) + 20)
    skin = cv2.morphologyEx(skin.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)

    def put(name: str, where: npt.NDArray[np.bool_]) -> None:
        regions[where & (regions == REGIONS.index("other"))] = REGIONS.index(name)

    if view == "front":
        put("forehead", v < 0.2)
        put("nose", (np.abs(u) < 0.13) & (v >= 0.3) & (v < 0.68))
        put("chin", (np.abs(u) < 0.3) & (v >= 0.85))
        put("left_cheek", (u >= 0.13) & (v >= 0.3) & (v < 0.85))  # patient's left = image right
        put("right_cheek", (u <= -0.13) & (v >= 0.3) & (v < 0.85))
    else:
        put("forehead", v < 0.2)
        put("chin", v >= 0.85)
        put("left_cheek" if view == "left" else "right_cheek", (v >= 0.3) & (v < 0.85))
    warnings = []
    if skin.sum() < 0.2 * ellipse.sum():
        warnings.append("little of the face looks like skin (lighting or colour cast?): counts may be low")
    return skin, regions, tuple(warnings)
