"""Can two photos of one patient be compared? Exposure, white balance, sharpness, scale, pose, alignment.

Each photo is summarised by ``photo_stats`` (no reference to the other photo), then ``assess_comparability``
turns the differences into a score in [0, 1], plain warnings ("follow-up is 1.8 stops darker") and two
verdicts: ``comparable`` (counts and lesion matching can be trusted) and ``lighting_comparable`` (colour
measures such as redness and shine can be compared).

Measures:

- exposure: median linear luminance of the face skin, in stops (log2);
- white balance: median chromaticity of the backdrop (everything off the face), log2 R/G and B/G;
  measured off the face so that a real change in skin redness is not mistaken for a colour cast. When
  the face fills the frame the whole frame is used and the figure is less trustworthy;
- sharpness: RMS Laplacian over RMS contrast of the face, after resizing the face to a fixed height and a
  light blur, so it depends on neither exposure nor photo size;
- scale and in-plane rotation: from the registration (face box heights without it);
- pose: views must match; an affine anisotropy above 1.08 hints that the head is turned; residual motion
  after the affine (the registration's local flow) above 1% of the face height means the face changed shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lesioncount.compare.register import Registration

Box = tuple[float, float, float, float]

#: Face height (pixels) at which sharpness is measured.
SHARPNESS_FACE_PX = 320
#: Thresholds for a warning.
WARN_STOPS = 0.5
WARN_WB_LOG2 = 0.2
WARN_SHARPNESS_RATIO = 0.6
#: Working scales may disagree with the registration by this factor before a pair is not comparable.
MAX_COUNTING_SCALE_MISMATCH = 1.10
WARN_SCALE_RATIO = 1.25
WARN_ROTATION_DEG = 5.0
WARN_ANISOTROPY = 1.08
WARN_QUALITY = 0.35
#: Residual non-rigid motion (median, after the affine) above this fraction of the face height.
WARN_NONRIGID_FRAC = 0.01
#: Colour measures (redness, shine) are compared only within these limits.
LIGHTING_STOPS = 0.5
LIGHTING_WB_LOG2 = 0.15
#: A pair scoring below this is marked not comparable.
MIN_SCORE = 0.5


@dataclass(frozen=True)
class PhotoStats:
    """Per-photo figures used for comparability.

    Attributes:
        exposure_log2: log2 of the median linear luminance (0-1) of the face skin.
        wb_log2_rg: median log2 R/G (linear light) off the face.
        wb_log2_bg: median log2 B/G (linear light) off the face.
        wb_source: ``backdrop`` or ``whole-frame``.
        sharpness: RMS Laplacian / RMS contrast of the face at ``SHARPNESS_FACE_PX``.
        clipped_fraction: share of face pixels with a channel at 255 (over-exposure).
        face_height_px: face box height, or None.
        view: the photo's view (``front``, ``left``, ``right`` or ``unknown``).
    """

    exposure_log2: float
    wb_log2_rg: float
    wb_log2_bg: float
    wb_source: str
    sharpness: float
    clipped_fraction: float
    face_height_px: float | None
    view: str = "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {
            "exposure_log2": round(self.exposure_log2, 4),
            "wb_log2_rg": round(self.wb_log2_rg, 4),
            "wb_log2_bg": round(self.wb_log2_bg, 4),
            "wb_source": self.wb_source,
            "sharpness": round(self.sharpness, 6),
            "clipped_fraction": round(self.clipped_fraction, 5),
            "face_height_px": self.face_height_px,
            "view": self.view,
        }


@dataclass(frozen=True)
class Comparability:
    """How comparable a follow-up photo is with its baseline.

    Attributes:
        score: 1 = fully comparable, 0 = not comparable.
        comparable: counts and lesion matching can be compared (score >= ``MIN_SCORE``, same view).
        lighting_comparable: colour measures (redness, shine) can be compared.
        exposure_stops: follow-up minus baseline exposure (negative = follow-up darker).
        wb_shift_log2: (R/G, B/G) log2 shift of the follow-up's white balance.
        sharpness_ratio: follow-up sharpness / baseline sharpness (below 1 = follow-up blurrier).
        scale_ratio: follow-up face size / baseline face size, or None.
        rotation_deg: follow-up in-plane rotation relative to baseline, or None.
        anisotropy: affine anisotropy of the registration (1 = pure similarity), or None.
        alignment_quality: registration NCC, or None.
        view_match: both photos have the same view.
        warnings: plain-language problems, worst first.
    """

    score: float
    comparable: bool
    lighting_comparable: bool
    exposure_stops: float
    wb_shift_log2: tuple[float, float]
    sharpness_ratio: float
    scale_ratio: float | None
    rotation_deg: float | None
    anisotropy: float | None
    alignment_quality: float | None
    view_match: bool
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        def r(v: float | None, n: int = 3) -> float | None:
            return None if v is None else round(v, n)

        return {
            "score": round(self.score, 3),
            "comparable": self.comparable,
            "lighting_comparable": self.lighting_comparable,
            "exposure_stops": round(self.exposure_stops, 3),
            "wb_shift_log2": [round(v, 4) for v in self.wb_shift_log2],
            "sharpness_ratio": round(self.sharpness_ratio, 3),
            "scale_ratio": r(self.scale_ratio),
            "rotation_deg": r(self.rotation_deg, 2),
            "anisotropy": r(self.anisotropy, 4),
            "alignment_quality": r(self.alignment_quality, 4),
            "view_match": self.view_match,
            "warnings": list(self.warnings),
        }


def _srgb_lut() -> npt.NDArray[np.float32]:
    c = np.arange(256, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


#: Linear light of each sRGB code value (IEC 61966-2-1): a lookup is many times faster than the power.
_SRGB_TO_LINEAR = _srgb_lut()


def _within(image: npt.NDArray[np.uint8], low: int, high: int) -> npt.NDArray[np.bool_]:
    """Pixels whose every channel lies strictly between ``low`` and ``high`` (not clipped, not black)."""
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    return (np.maximum(np.maximum(r, g), b) < high) & (np.minimum(np.minimum(r, g), b) > low)


def srgb_to_linear(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """sRGB uint8 -> linear light float32 in [0, 1] (IEC 61966-2-1)."""
    return _SRGB_TO_LINEAR[image]


def linear_to_srgb(lin: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """Linear light float in [0, 1] -> sRGB uint8 (values clipped)."""
    c = np.clip(lin, 0.0, 1.0)
    s = np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    return np.clip(s * 255.0 + 0.5, 0, 255).astype(np.uint8)


def face_mask(shape: tuple[int, ...], face_box: Box | None) -> npt.NDArray[np.bool_]:
    """HxW bool: an ellipse inscribed in the face box (the central 60% of the frame with no box)."""
    h, w = shape[:2]
    m = np.zeros((h, w), np.uint8)
    if face_box is None:
        cx, cy, ax, ay = w / 2, h / 2, 0.3 * w, 0.3 * h
    else:
        x, y, bw, bh = face_box
        cx, cy, ax, ay = x + bw / 2, y + bh / 2, bw / 2, bh / 2
    cv2.ellipse(m, (round(cx), round(cy)), (max(1, round(ax)), max(1, round(ay))), 0, 0, 360, 1, -1)
    return m.astype(bool)


def _sharpness(gray: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]) -> float:
    if mask.sum() < 64:
        return 0.0
    # A light blur first: the finest scale is mostly noise, JPEG blocking and resampling artefacts.
    lap = cv2.Laplacian(cv2.GaussianBlur(gray, (0, 0), 1.0), cv2.CV_32F, ksize=3)
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    sel = inner if inner.sum() >= 64 else mask
    var = float(gray[sel].var())
    return float(np.sqrt((lap[sel] ** 2).mean() / var)) if var > 1e-9 else 0.0


def _face_crop_gray(
    image: npt.NDArray[np.uint8], mask: npt.NDArray[np.bool_], face_height_px: float | None
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Grey image and mask resized so the face is ``SHARPNESS_FACE_PX`` tall."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), bool)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    gray = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32)
    m = mask[y0:y1, x0:x1]
    s = SHARPNESS_FACE_PX / float(face_height_px or (y1 - y0))
    if abs(s - 1) > 1e-3:
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        gray = np.asarray(cv2.resize(gray, None, fx=s, fy=s, interpolation=interp), np.float32)
        m = cv2.resize(m.astype(np.uint8), (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    return gray, m


def photo_stats(
    image: npt.NDArray[np.uint8],
    *,
    face_box: Box | None = None,
    skin_mask: npt.NDArray[np.bool_] | None = None,
    view: str = "unknown",
) -> PhotoStats:
    """Summarise one photo for comparability.

    Args:
        image: HxWx3 uint8 RGB.
        face_box: ``(x, y, w, h)`` face box, or None.
        skin_mask: HxW bool skin to measure exposure on (the face ellipse when None).
        view: the photo's view.

    Returns:
        The photo's statistics.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8 RGB, got {image.shape} {image.dtype}")
    face = face_mask(image.shape, face_box)
    skin = skin_mask if skin_mask is not None and skin_mask.sum() >= 64 else face
    lin = srgb_to_linear(image)
    y = 0.2126 * lin[..., 0] + 0.7152 * lin[..., 1] + 0.0722 * lin[..., 2]
    exposure = math.log2(max(float(np.median(y[skin])) if skin.any() else float(np.median(y)), 1e-6))
    # Backdrop: off a generously padded face box; needs a fair share of the frame to be meaningful.
    if face_box is not None:
        x, yb, bw, bh = face_box
        pad = face_mask(image.shape, (x - 0.35 * bw, yb - 0.35 * bh, 1.7 * bw, 1.9 * bh))
    else:
        pad = face
    off = ~pad & _within(image, 20, 250)  # no clipped or near-black pixels
    source = "backdrop" if off.mean() >= 0.15 else "whole-frame"
    sel = off if source == "backdrop" else np.ones(image.shape[:2], bool)
    # Median of per-pixel chromaticity: unlike a mean it barely depends on which bright pixels clipped.
    px = lin[sel] + 1e-4
    log_rg, log_bg = float(np.median(np.log2(px[:, 0] / px[:, 1]))), float(np.median(np.log2(px[:, 2] / px[:, 1])))
    gray, m = _face_crop_gray(image, face, face_box[3] if face_box is not None else None)
    return PhotoStats(
        exposure_log2=exposure,
        wb_log2_rg=log_rg,
        wb_log2_bg=log_bg,
        wb_source=source,
        sharpness=_sharpness(gray, m),
        clipped_fraction=float((image[face] == 255).any(axis=1).mean()) if face.any() else 0.0,
        face_height_px=None if face_box is None else float(face_box[3]),
        view=view,
    )


@dataclass(frozen=True)
class PairedLight:
    """Exposure and white balance of a follow-up against its baseline, on the same face-skin pixels.

    Attributes:
        exposure_stops: log2 of the follow-up's median skin luminance over the baseline's (linear light).
        wb_log2_rg, wb_log2_bg: change of the median skin chromaticity, log2 (red/green, blue/green).
        n_pixels: pixels both photos share after registration, that were measured.
        region: ``skin`` (the face skin both share) or ``frame`` (too little shared skin: the shared frame).
    """

    exposure_stops: float
    wb_log2_rg: float
    wb_log2_bg: float
    n_pixels: int
    region: str = "skin"


#: Fewer shared skin pixels than this: the paired measure is not used (each photo's own is).
MIN_PAIRED_PIXELS = 400


def paired_light(
    base: npt.NDArray[np.uint8],
    follow: npt.NDArray[np.uint8],
    base_skin: npt.NDArray[np.bool_],
    follow_skin: npt.NDArray[np.bool_],
    affine: npt.ArrayLike,
) -> PairedLight | None:
    """Measure exposure and white balance on the registered overlap of the two photos' face skin.

    Each photo measured on its own compares different pixels (a face turned a little shows more of one
    cheek; a backdrop or the whole frame has its own colour), and misreads small changes. Here the
    follow-up is warped onto the baseline and both are read on the skin they share, away from clipped
    highlights and deep shadows.

    Args:
        base, follow: HxWx3 uint8 RGB photos.
        base_skin, follow_skin: their skin masks.
        affine: 2x3, follow-up pixels -> baseline pixels (in these arrays' pixels).

    Returns:
        The paired measure (on the shared frame when they share too little skin), or None when the photos
        hardly overlap.
    """
    h, w = base.shape[:2]
    m = np.asarray(affine, np.float64).reshape(2, 3)
    warped = cv2.warpAffine(follow, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    fskin = cv2.warpAffine(follow_skin.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
    inside = cv2.warpAffine(np.ones(follow.shape[:2], np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
    usable = inside & _within(base, 8, 250) & _within(warped, 8, 250)
    region = "skin"
    both = cv2.erode((base_skin & fskin & usable).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if int(both.sum()) < MIN_PAIRED_PIXELS:
        # Too little shared skin (a face found in one photo only, say): the shared frame, still the same
        # pixels in both photos.
        region = "frame"
        both = cv2.erode(usable.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    n = int(both.sum())
    if n < MIN_PAIRED_PIXELS:
        return None
    lb, lf = srgb_to_linear(base)[both] + 1e-4, srgb_to_linear(warped)[both] + 1e-4

    def lum(px: npt.NDArray[np.float32]) -> float:
        return float(np.median(0.2126 * px[:, 0] + 0.7152 * px[:, 1] + 0.0722 * px[:, 2]))

    def chroma(px: npt.NDArray[np.float32], k: int) -> float:
        return float(np.median(np.log2(px[:, k] / px[:, 1])))

    return PairedLight(
        exposure_stops=math.log2(lum(lf) / lum(lb)),
        wb_log2_rg=chroma(lf, 0) - chroma(lb, 0),
        wb_log2_bg=chroma(lf, 2) - chroma(lb, 2),
        n_pixels=n,
        region=region,
    )


def _fmt_ratio(r: float) -> str:
    return f"{abs(r - 1) * 100:.0f}%"


@dataclass(frozen=True)
class _Pair:
    """What the rules read: both photos' stats, the registration and the paired light measures."""

    base: PhotoStats
    follow: PhotoStats
    reg: Registration | None
    stops: float
    wb: tuple[float, float]
    sharpness_ratio: float
    scale_ratio: float | None
    faces_found: tuple[bool, bool] | None
    counting_scales: tuple[float, float] | None = None

    @property
    def wb_mag(self) -> float:
        return float(math.hypot(*self.wb))


#: A rule's verdict: the factor it multiplies the score by, and its warning (severity, text) or None.
_Verdict = tuple[float, tuple[float, str] | None]


def _clip(v: float, lo: float, hi: float) -> float:
    return float(np.clip(v, lo, hi))


def _rule_view(p: _Pair) -> _Verdict:
    if p.base.view == p.follow.view or "unknown" in (p.base.view, p.follow.view):
        return 1.0, None
    return 0.0, (1.0, f"views differ (baseline {p.base.view}, follow-up {p.follow.view}): photos cannot be compared")


def _rule_faces(p: _Pair) -> _Verdict:
    if p.faces_found is None or p.faces_found[0] == p.faces_found[1]:
        return 1.0, None
    which = "follow-up" if p.faces_found[0] else "baseline"
    return 0.0, (0.9, f"the face was not found in the {which}: the photos were counted at different scales")


def _rule_counting_scale(p: _Pair) -> _Verdict:
    """Both photos must be counted at the same scale of the face: the working scales (from each photo's own
    face measurement) must differ as the registration says the photos do. When the face was measured
    differently in one (a re-take whose landmarks were fitted worse), the model saw the lesions at different
    sizes and the lesion fates cannot be trusted."""
    if p.counting_scales is None or p.reg is None or min(p.counting_scales) <= 0 or p.reg.scale <= 0:
        return 1.0, None
    mismatch = (p.counting_scales[1] / p.counting_scales[0]) / p.reg.scale
    if 1 / MAX_COUNTING_SCALE_MISMATCH <= mismatch <= MAX_COUNTING_SCALE_MISMATCH:
        return 1.0, None
    pct = abs(mismatch - 1) * 100
    return 0.0, (
        0.85,
        f"the face was measured {pct:.0f}% {'larger' if mismatch < 1 else 'smaller'} in the follow-up than the "
        "alignment shows: the photos were counted at different scales",
    )


def _rule_exposure(p: _Pair) -> _Verdict:
    """Up to a third of a stop costs nothing; then the score falls to 0 over 2.5 stops."""
    factor = _clip(1 - (abs(p.stops) - 0.33) / 2.5, 0.0, 1.0)
    if abs(p.stops) < WARN_STOPS:
        return factor, None
    word, light = ("darker", "half") if p.stops < 0 else ("brighter", "twice")
    text = f"follow-up is {abs(p.stops):.1f} stops {word} than baseline (exposure: 1 stop is {light} the light)"
    return factor, (min(1.0, abs(p.stops) / 2), text)


def _rule_clipping(p: _Pair) -> _Verdict:
    f = p.follow.clipped_fraction
    if f > 0.02 and f > 2 * p.base.clipped_fraction:
        return 0.85, (0.4, f"follow-up is over-exposed on {100 * f:.0f}% of the face")
    return 1.0, None


def _rule_white_balance(p: _Pair) -> _Verdict:
    """A tenth of a log2 unit costs nothing; then the score falls to 0 over one more."""
    mag = p.wb_mag
    factor = _clip(1 - max(0.0, mag - 0.1) / 1.0, 0.0, 1.0)
    if mag < WARN_WB_LOG2:
        return factor, None
    warm = p.wb[0] - p.wb[1]
    tone = "warmer (more red/yellow)" if warm > 0 else "cooler (more blue)"
    if abs(warm) < 0.5 * mag:
        tone = "greener" if p.wb[0] + p.wb[1] < 0 else "more magenta"
    return factor, (min(1.0, mag), f"follow-up colour balance is {tone}: red/blue ratio x{2**warm:.2f}")


def _rule_sharpness(p: _Pair) -> _Verdict:
    sr = p.sharpness_ratio
    factor = _clip((min(sr, 1 / sr) / WARN_SHARPNESS_RATIO) ** 2, 0.2, 1.0) if sr > 0 else 0.2
    if sr < WARN_SHARPNESS_RATIO:
        return factor, (1 - sr, f"follow-up is blurrier than baseline (sharpness {100 * sr:.0f}% of baseline)")
    if sr > 1 / WARN_SHARPNESS_RATIO:
        return factor, (1 - 1 / sr, f"baseline is blurrier than follow-up (sharpness {100 / sr:.0f}% of follow-up)")
    return factor, None


def _rule_scale(p: _Pair) -> _Verdict:
    """A smaller face loses small lesions (costs more); a larger one only loses frame."""
    r = p.scale_ratio
    if r is None or 1 / WARN_SCALE_RATIO <= r <= WARN_SCALE_RATIO:
        return 1.0, None
    word = "larger" if r > 1 else "smaller"
    factor = _clip(r**1.5 if r < 1 else 1 / r**0.5, 0.3, 1.0)
    return factor, (0.3, f"face is {_fmt_ratio(r)} {word} in the follow-up (camera distance changed)")


def _rule_rotation(p: _Pair) -> _Verdict:
    rot = p.reg.rotation_deg if p.reg is not None else None
    if rot is None or abs(rot) < WARN_ROTATION_DEG:
        return 1.0, None
    way = "counter-clockwise" if rot > 0 else "clockwise"
    factor = _clip(1 - (abs(rot) - WARN_ROTATION_DEG) / 40, 0.5, 1.0)
    return factor, (0.2, f"follow-up is rotated {abs(rot):.0f}° {way} relative to baseline (head tilt)")


def _rule_mirror(p: _Pair) -> _Verdict:
    if p.reg is None or not p.reg.mirrored:
        return 1.0, None
    return 0.8, (0.6, "follow-up is a mirror image of the baseline (selfie camera?): its sides are swapped back")


def _rule_nonrigid(p: _Pair) -> _Verdict:
    if p.reg is None or not p.base.face_height_px or p.reg.nonrigid_px <= 0:
        return 1.0, None
    frac = p.reg.nonrigid_px / p.base.face_height_px
    if frac < WARN_NONRIGID_FRAC:
        return 1.0, None
    text = (
        f"face shape differs after alignment (expression or head turn, {p.reg.nonrigid_px:.0f} px "
        "typical residual motion): lesion positions were corrected locally"
    )
    return _clip(1 - (frac - WARN_NONRIGID_FRAC) * 10, 0.5, 1.0), (0.3, text)


def _rule_pose(p: _Pair) -> _Verdict:
    anis = p.reg.anisotropy if p.reg is not None else None
    if anis is None or anis < WARN_ANISOTROPY:
        return 1.0, None
    text = f"head pose differs (the face is stretched {100 * (anis - 1):.0f}% along one axis)"
    return _clip(1 - (anis - 1) * 2, 0.3, 1.0), (0.5, text)


def _rule_alignment(p: _Pair) -> _Verdict:
    """Alignment quality 0.1 scores 0, 0.6 and above scores 1."""
    q = p.reg.quality if p.reg is not None else None
    if q is None:
        return 1.0, None
    factor = _clip((q - 0.1) / (0.6 - 0.1), 0.0, 1.0)
    if q < WARN_QUALITY:
        return factor, (0.8, f"alignment is poor (quality {q:.2f}): lesion-by-lesion matching is unreliable")
    return factor, None


#: The rules, in the order their factors multiply into the score.
RULES: tuple[Callable[[_Pair], _Verdict], ...] = (
    _rule_view,
    _rule_faces,
    _rule_counting_scale,
    _rule_exposure,
    _rule_clipping,
    _rule_white_balance,
    _rule_sharpness,
    _rule_scale,
    _rule_rotation,
    _rule_mirror,
    _rule_nonrigid,
    _rule_pose,
    _rule_alignment,
)


def assess_comparability(
    base: PhotoStats,
    follow: PhotoStats,
    registration: Registration | None = None,
    light: PairedLight | None = None,
    faces_found: tuple[bool, bool] | None = None,
    counting_scales: tuple[float, float] | None = None,
) -> Comparability:
    """Score how comparable a follow-up is with its baseline, with plain warnings.

    The score is the product of each rule's factor (``RULES``: view, faces found, exposure, clipping, white
    balance, sharpness, scale, rotation, mirror, residual motion, pose, alignment); each rule may add a
    warning, and the warnings come worst first.

    Args:
        base: baseline ``photo_stats``.
        follow: follow-up ``photo_stats``.
        registration: follow-up -> baseline registration, when done (gives scale, rotation, pose, quality).
        light: exposure and white balance measured on the shared skin (``paired_light``); when given it
            replaces the comparison of the photos' own measures.
        faces_found: whether the counter found the face in the baseline and in the follow-up; a face found in
            one only means the two were counted at different scales and on different skin: not comparable.
        counting_scales: each photo's working scale (``FaceInfo.scale``); with the registration, a mismatch
            over ``MAX_COUNTING_SCALE_MISMATCH`` means the two were counted at different face scales: not
            comparable.

    Returns:
        The comparability verdict.
    """
    if registration is not None:
        scale_ratio: float | None = 1.0 / registration.scale
    elif base.face_height_px and follow.face_height_px:
        scale_ratio = follow.face_height_px / base.face_height_px
    else:
        scale_ratio = None
    pair = _Pair(
        base=base,
        follow=follow,
        reg=registration,
        stops=light.exposure_stops if light is not None else follow.exposure_log2 - base.exposure_log2,
        wb=(light.wb_log2_rg, light.wb_log2_bg)
        if light is not None
        else (follow.wb_log2_rg - base.wb_log2_rg, follow.wb_log2_bg - base.wb_log2_bg),
        sharpness_ratio=follow.sharpness / base.sharpness if base.sharpness > 0 else 1.0,
        scale_ratio=scale_ratio,
        faces_found=faces_found,
        counting_scales=counting_scales,
    )
    score = 1.0
    warnings: list[tuple[float, str]] = []  # (severity, text)
    for rule in RULES:
        factor, warning = rule(pair)
        score *= factor
        if warning is not None:
            warnings.append(warning)
    whole = base.wb_source == "whole-frame" or follow.wb_source == "whole-frame"
    if light is None and whole and pair.wb_mag >= WARN_WB_LOG2 / 2:
        warnings.append((0.05, "the face fills the frame: white balance is judged from the whole photo, skin included"))
    warnings.sort(key=lambda t: -t[0])
    view_match = _rule_view(pair)[0] > 0
    lighting = view_match and abs(pair.stops) <= LIGHTING_STOPS and pair.wb_mag <= LIGHTING_WB_LOG2
    reg = registration
    return Comparability(
        score=float(score),
        comparable=bool(view_match and score >= MIN_SCORE),
        lighting_comparable=bool(lighting),
        exposure_stops=float(pair.stops),
        wb_shift_log2=(float(pair.wb[0]), float(pair.wb[1])),
        sharpness_ratio=float(pair.sharpness_ratio),
        scale_ratio=scale_ratio,
        rotation_deg=reg.rotation_deg if reg is not None else None,
        anisotropy=reg.anisotropy if reg is not None else None,
        alignment_quality=reg.quality if reg is not None else None,
        view_match=view_match,
        warnings=tuple(t for _, t in warnings),
    )


def normalise_colour(
    follow_image: npt.NDArray[np.uint8],
    base: PhotoStats,
    follow: PhotoStats,
    *,
    max_stops: float = 2.0,
) -> tuple[npt.NDArray[np.uint8], str]:
    """Bring a follow-up's exposure and white balance to the baseline's, for display side by side.

    Gains are applied in linear light: one overall gain for exposure (measured on face skin) and R and B
    gains for white balance (measured on the backdrop only: a skin-based correction would erase the real
    change in redness we want to show). Not done when the exposure gap exceeds ``max_stops`` (too much is
    clipped or lost in noise to recover). Counting always runs on the original photos.

    Returns:
        ``(image, note)``: the corrected image (a copy) and a note on what was done.
    """
    stops = follow.exposure_log2 - base.exposure_log2
    if abs(stops) > max_stops:
        return follow_image.copy(), f"not normalised: exposure differs by {abs(stops):.1f} stops"
    gains = np.full(3, 2.0 ** (-stops), np.float32)
    note = f"exposure {-stops:+.2f} stops"
    if base.wb_source == "backdrop" and follow.wb_source == "backdrop":
        gains[0] *= 2.0 ** (base.wb_log2_rg - follow.wb_log2_rg)
        gains[2] *= 2.0 ** (base.wb_log2_bg - follow.wb_log2_bg)
        note += ", white balance matched on the backdrop"
    out = linear_to_srgb(srgb_to_linear(follow_image) * gains)
    return out, "normalised: " + note
