"""Align a follow-up photo to the baseline photo of the same view.

Alignment runs in four steps:

1. candidates: first the similarity that takes the follow-up's 468 facial landmarks onto the baseline's
   (when both photos have them: the landmarks are the surest anchor, robust to exposure and lesion
   changes); then AKAZE (ORB as a fallback) features inside the face, ratio-tested and fitted by RANSAC to a
   similarity (rotation, uniform scale, shift) or, when it explains clearly more matches, a full affine
   (a slightly turned head, a sheared export), at a tight and a loose threshold; the same on the mirrored
   follow-up when the direct fit is weak (front-camera selfies are mirror images); the face boxes'
   similarity; the identity;
2. the candidate that aligns the faces best (band-pass NCC, below) is kept, preferring the ones listed first;
3. ECC (``cv2.findTransformECC``, affine) refines it on the face region, and is kept only when it stays
   consistent with the feature matches (ECC maximises a zero-mean correlation, so it ignores exposure, but
   it can lock onto smooth shading);
4. dense optical flow (Farneback) between the baseline and the aligned follow-up measures what one affine
   cannot follow (an expression, a small turn); ``Registration.to_base`` uses it to correct lesion positions.

The alignment-quality figure is the normalised cross-correlation (NCC) of the aligned grey faces after a
band-pass filter (difference of Gaussians), so that it follows skin texture rather than smooth shading:
1 is a perfect match; real photo pairs aligned to within a pixel score about 0.7-0.9, 2 px off about 0.7,
4 px off about 0.45, 8 px off about 0.1. Labels: good >= 0.6, fair >= 0.35, poor below (lesion-level
matching is then not to be trusted).

All transforms are 2x3 affine matrices that map follow-up photo pixels to baseline photo pixels.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import numpy.typing as npt

from lesioncount.preprocess import crop_box

log = logging.getLogger(__name__)

#: Long side (pixels) at which features and ECC run; photos are downscaled to it.
WORK_PX = 800
#: Fewer RANSAC inliers than this and the feature estimate is not trusted.
MIN_INLIERS = 12
#: With this many inliers the direct feature fit is trusted without trying a mirrored follow-up.
CONFIDENT_INLIERS = 48
#: Plausible face-size ratios between two visits; fits outside are degenerate.
SCALE_RANGE = (0.25, 4.0)
#: A full affine replaces the similarity when it has this many times the inliers.
AFFINE_GAIN = 1.25
#: ECC may worsen the median feature-inlier residual by at most this many work pixels.
ECC_MAX_DRIFT_PX = 0.5
#: The loose RANSAC fit replaces the tight one when it has this many times the inliers.
LOOSE_GAIN = 1.5
#: RANSAC inlier threshold as a fraction of the work image's long side (at least 3 px).
RANSAC_FRAC = 0.0125
#: Residual motion above this fraction of the face height is not trusted.
MAX_FLOW_FRAC = 0.06
#: The residual flow is worked out on the face's box grown by this many work pixels (two Farneback windows).
FLOW_MARGIN_PX = 64
#: Largest axis-scale ratio of a plausible fit (a turned head stretches the face by 10-20%, not 50%).
MAX_ANISOTROPY = 1.5
#: Quality labels by band-pass NCC, calibrated on 30 real photo pairs (640 px frames) registered and then
#: shifted on purpose: median NCC 0.81 aligned, 0.70 at 2 px off, 0.46 at 4 px, 0.09 at 8 px.
QUALITY_GOOD = 0.6
QUALITY_FAIR = 0.35

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Registration:
    """How a follow-up photo maps onto the baseline photo.

    Attributes:
        matrix: 2x3 affine, follow-up pixels -> baseline pixels (as nested tuples, JSON friendly).
        method: ``landmarks``, ``features``, ``face-box`` or ``identity``, with ``+ecc`` when ECC refined it.
        n_matches: ratio-tested feature matches.
        n_inliers: RANSAC inliers of the similarity fit (0 when features were not used).
        residual_px: median inlier reprojection error in baseline pixels, or None.
        quality: band-pass NCC of the aligned faces in [-1, 1] (the alignment-quality figure).
        flow: optional (h, w, 2) float32 residual motion after the affine, in baseline work pixels (dense
            optical flow from the baseline to the aligned follow-up on the face); corrects lesion positions
            locally for what one affine cannot follow (a turned head, an expression). None when not computed.
        flow_scale: work pixels per baseline pixel of ``flow``.
    """

    matrix: tuple[tuple[float, float, float], tuple[float, float, float]]
    method: str
    n_matches: int = 0
    n_inliers: int = 0
    residual_px: float | None = None
    quality: float = 0.0
    flow: npt.NDArray[np.float32] | None = field(default=None, repr=False, compare=False)
    flow_scale: float = 1.0

    @property
    def nonrigid_px(self) -> float:
        """Median residual motion on the face after the affine, baseline pixels (0 without ``flow``)."""
        if self.flow is None:
            return 0.0
        mag = np.linalg.norm(self.flow, axis=2)
        moving = mag[mag > 0]
        return float(np.median(moving)) / self.flow_scale if moving.size else 0.0

    def to_base(self, xy: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Follow-up pixel positions -> baseline pixel positions: the affine, then the local flow correction."""
        p = map_points(self.affine, xy)
        if self.flow is None or len(p) == 0:
            return p
        h, w = self.flow.shape[:2]
        q = p * self.flow_scale
        ix = np.clip(np.round(q[:, 0]).astype(int), 0, w - 1)
        iy = np.clip(np.round(q[:, 1]).astype(int), 0, h - 1)
        inside = (q[:, 0] >= 0) & (q[:, 0] <= w - 1) & (q[:, 1] >= 0) & (q[:, 1] <= h - 1)
        # Flow maps baseline p to aligned follow-up p + flow(p); for smooth flow p ~ q - flow(q).
        d = self.flow[iy, ix].astype(np.float64) * inside[:, None]
        return p - d / self.flow_scale

    @property
    def affine(self) -> npt.NDArray[np.float64]:
        """The 2x3 float64 matrix."""
        return np.array(self.matrix, np.float64)

    @property
    def mirrored(self) -> bool:
        """The follow-up is a mirror image of the baseline (left and right swapped)."""
        return bool(np.linalg.det(self.affine[:, :2]) < 0)

    def _unmirrored(self) -> npt.NDArray[np.float64]:
        a = self.affine[:, :2]
        return a @ np.diag([-1.0, 1.0]) if self.mirrored else a

    @property
    def scale(self) -> float:
        """Baseline pixels per follow-up pixel (geometric mean of the axis scales); 1.2 = face 1/1.2 as big."""
        return float(math.sqrt(abs(np.linalg.det(self.affine[:, :2]))))

    @property
    def rotation_deg(self) -> float:
        """How far the follow-up is rotated relative to the baseline, degrees, counter-clockwise on screen."""
        a = self._unmirrored()
        return float(math.degrees(math.atan2(a[1, 0] - a[0, 1], a[0, 0] + a[1, 1])))

    @property
    def anisotropy(self) -> float:
        """Ratio of the larger to the smaller axis scale (1 for a pure similarity); >1 hints at a turned head."""
        s = np.linalg.svd(self.affine[:, :2], compute_uv=False)
        return float(s[0] / max(s[1], 1e-9))

    @property
    def quality_label(self) -> str:
        """``good``, ``fair`` or ``poor``."""
        return "good" if self.quality >= QUALITY_GOOD else "fair" if self.quality >= QUALITY_FAIR else "poor"

    def to_dict(self) -> dict[str, object]:
        return {
            "matrix": [[round(v, 6) for v in row] for row in self.matrix],
            "method": self.method,
            "n_matches": self.n_matches,
            "n_inliers": self.n_inliers,
            "residual_px": None if self.residual_px is None else round(self.residual_px, 3),
            "quality": round(self.quality, 4),
            "quality_label": self.quality_label,
            "rotation_deg": round(self.rotation_deg, 3),
            "scale": round(self.scale, 5),
            "anisotropy": round(self.anisotropy, 4),
            "mirrored": self.mirrored,
            "nonrigid_px": round(self.nonrigid_px, 3),
        }


def _h(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """2x3 -> 3x3 homogeneous."""
    return np.vstack([m, [0.0, 0.0, 1.0]])


def _scale_m(s: float) -> npt.NDArray[np.float64]:
    return np.diag([s, s, 1.0])


def map_points(matrix: npt.ArrayLike, xy: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Apply a 2x3 affine to points.

    Args:
        matrix: 2x3 affine.
        xy: (N, 2) points.

    Returns:
        (N, 2) float64 mapped points.
    """
    m = np.asarray(matrix, np.float64)
    p = np.asarray(xy, np.float64).reshape(-1, 2)
    return p @ m[:, :2].T + m[:, 2]


def invert(matrix: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Inverse of a 2x3 affine."""
    return np.asarray(cv2.invertAffineTransform(np.asarray(matrix, np.float64)), np.float64)


def warp_to_base(
    follow_image: npt.NDArray[np.uint8],
    registration: Registration,
    base_shape: tuple[int, ...],
    *,
    interpolation: int = cv2.INTER_LINEAR,
    border: int = cv2.BORDER_CONSTANT,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Resample the follow-up photo into the baseline frame (``interpolation``, ``border``: OpenCV flags).

    Returns:
        ``(image, valid)``: the warped HxWx3 uint8 image and an HxW bool mask of pixels the follow-up covers.
    """
    h, w = base_shape[:2]
    warped = np.asarray(
        cv2.warpAffine(follow_image, registration.affine, (w, h), flags=interpolation, borderMode=border), np.uint8
    )
    ones = np.full(follow_image.shape[:2], 255, np.uint8)
    valid = cv2.warpAffine(ones, registration.affine, (w, h), flags=cv2.INTER_NEAREST) > 0
    return warped, valid


def _gray(image: npt.NDArray[np.uint8], s: float) -> npt.NDArray[np.uint8]:
    g = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if s != 1.0:
        g = cv2.resize(g, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    return np.asarray(g, np.uint8)


def _box_mask(shape: tuple[int, int], box: Box | None, s: float, pad: float) -> npt.NDArray[np.uint8]:
    """255 inside the (scaled, padded) box, or everywhere when no box."""
    h, w = shape
    if box is None:
        return np.full((h, w), 255, np.uint8)
    x, y, bw, bh = (v * s for v in box)
    x0, y0 = int(max(0, x - pad * bw)), int(max(0, y - pad * bh))
    x1, y1 = int(min(w, x + bw * (1 + pad))), int(min(h, y + bh * (1 + pad)))
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 255
    return m


def box_similarity(base_box: Box, follow_box: Box) -> npt.NDArray[np.float64]:
    """Similarity (no rotation) taking the follow-up face box onto the baseline face box (2x3)."""
    bx, by, bw, bh = base_box
    fx, fy, fw, fh = follow_box
    s = math.sqrt((bw * bh) / max(fw * fh, 1e-9))
    return np.array([[s, 0.0, bx + bw / 2 - s * (fx + fw / 2)], [0.0, s, by + bh / 2 - s * (fy + fh / 2)]])


@dataclass(frozen=True)
class _Fit:
    """A candidate follow->base transform in work pixels, with the feature inliers that support it."""

    matrix: npt.NDArray[np.float64]
    method: str
    n_matches: int = 0
    n_inliers: int = 0
    residual_px: float | None = None
    src: npt.NDArray[np.float32] | None = None  # inlier follow-up points
    dst: npt.NDArray[np.float32] | None = None  # inlier baseline points

    def residual_of(self, m: npt.NDArray[np.float64]) -> float | None:
        """Median distance at which ``m`` maps this fit's inliers (None without inliers)."""
        if self.src is None or self.dst is None or len(self.src) == 0:
            return None
        return float(np.median(np.linalg.norm(map_points(m, self.src) - self.dst, axis=1)))


def _landmark_fit(base_xy: npt.NDArray[np.float64], follow_xy: npt.NDArray[np.float64]) -> _Fit | None:
    """Similarity taking the follow-up's landmarks onto the baseline's (work pixels), robust to a few strays."""
    src, dst = follow_xy.reshape(-1, 2).astype(np.float32), base_xy.reshape(-1, 2).astype(np.float32)
    if len(src) != len(dst) or len(src) < 3:
        return None
    m, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if m is None:
        return None
    keep = inl.ravel().astype(bool)
    resid = np.linalg.norm(map_points(m, src[keep]) - dst[keep], axis=1)
    return _Fit(
        m.astype(np.float64), "landmarks", len(src), int(keep.sum()), float(np.median(resid)), src[keep], dst[keep]
    )


def _features(
    gb: npt.NDArray[np.uint8], gf: npt.NDArray[np.uint8], mb: npt.NDArray[np.uint8], mf: npt.NDArray[np.uint8]
) -> list[_Fit]:
    """Follow->base fits (work pixels) from AKAZE, else ORB: a similarity, and a full affine when it explains
    ``AFFINE_GAIN`` times as many matches (a slightly turned head, a sheared export).
    """
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    eb, ef = clahe.apply(gb), clahe.apply(gf)
    thr = max(3.0, RANSAC_FRAC * max(gb.shape))
    best: list[_Fit] = []
    for name in ("akaze", "orb"):
        det = cv2.AKAZE.create(threshold=0.0005) if name == "akaze" else cv2.ORB.create(nfeatures=4000)
        kb, db = det.detectAndCompute(eb, mb)
        kf, df = det.detectAndCompute(ef, mf)
        if db is None or df is None or len(kb) < 3 or len(kf) < 3:
            continue
        pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(df, db, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
        if len(good) < 3:
            continue
        src = np.array([kf[m.queryIdx].pt for m in good], np.float32)
        dst = np.array([kb[m.trainIdx].pt for m in good], np.float32)
        # A tight threshold, and a looser one of about 1% of the image: a face is not flat, and when far more
        # matches agree loosely than tightly (an expression, a small turn), the loose fit plus the local flow
        # follows the face better than a tight fit to part of it.
        by_thr: list[list[_Fit]] = []
        for t in (3.0, thr) if thr > 3.0 else (3.0,):
            fits_t: list[_Fit] = []
            for estimate in (cv2.estimateAffinePartial2D, cv2.estimateAffine2D):
                m, inl = estimate(src, dst, method=cv2.RANSAC, ransacReprojThreshold=t, maxIters=5000, confidence=0.999)
                if m is None or inl is None:
                    continue
                ok = inl.ravel().astype(bool)
                fit = _Fit(np.asarray(m, np.float64), "features", len(good), int(ok.sum()), None, src[ok], dst[ok])
                fits_t.append(replace(fit, residual_px=fit.residual_of(fit.matrix)))
            by_thr.append(fits_t)
        fits = by_thr[0]
        if len(by_thr) == 2 and max((f.n_inliers for f in by_thr[1]), default=0) >= LOOSE_GAIN * max(
            (f.n_inliers for f in fits), default=0
        ):
            fits = by_thr[1]
        if fits and max(f.n_inliers for f in fits) > max((f.n_inliers for f in best), default=0):
            best = fits
        if best and max(f.n_inliers for f in best) >= 4 * MIN_INLIERS:
            break
    if len(best) == 2 and best[1].n_inliers < AFFINE_GAIN * best[0].n_inliers:
        best = best[:1]  # the similarity explains the matches about as well: keep the simpler model
    return best


def _plausible(m_work: npt.NDArray[np.float64], sb: float, sf: float) -> bool:
    """A fit with a photo-pixel scale in ``SCALE_RANGE`` and little shear (degenerate RANSAC fits fail this)."""
    sv = np.linalg.svd(m_work[:, :2], compute_uv=False)
    s = math.sqrt(abs(float(sv[0] * sv[1]))) * sf / sb
    return bool(SCALE_RANGE[0] <= s <= SCALE_RANGE[1] and sv[0] / max(float(sv[1]), 1e-9) <= MAX_ANISOTROPY)


def _bandpass(g: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Difference of Gaussians: keeps pores, lesions and hair, drops lighting gradients and pixel noise."""
    return np.asarray(cv2.GaussianBlur(g, (0, 0), 1.5) - cv2.GaussianBlur(g, (0, 0), 6.0), np.float32)


def _ncc(
    base_bandpass: npt.NDArray[np.float32],
    gf: npt.NDArray[np.uint8],
    m_work: npt.NDArray[np.float64],
    mask: npt.NDArray[np.uint8],
    flow: npt.NDArray[np.float32] | None = None,
) -> float:
    """Band-pass NCC of the base (its ``_bandpass``, worked out once per registration) and the warped
    follow-up (work pixels) inside mask and the follow-up's footprint.

    Band-pass, because the smooth shading of a face correlates well even when it is misaligned by 10 px,
    while skin texture does not.
    """
    h, w = base_bandpass.shape
    warped = cv2.warpAffine(gf.astype(np.float32), m_work, (w, h), flags=cv2.INTER_LINEAR)
    valid = cv2.warpAffine(np.ones_like(gf, np.uint8), m_work, (w, h), flags=cv2.INTER_NEAREST) > 0
    if flow is not None:  # with the local correction: the follow-up content at p + flow(p)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        mx, my = xx + flow[..., 0], yy + flow[..., 1]
        warped = cv2.remap(warped, mx, my, cv2.INTER_LINEAR)
        valid = cv2.remap(valid.astype(np.uint8), mx, my, cv2.INTER_NEAREST) > 0
    # Stay clear of the footprint's edge, where the warp's black border leaks into the band-pass.
    sel = (cv2.erode(valid.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0) & (mask > 0)
    if sel.sum() < 100:
        return 0.0
    a = base_bandpass[sel]
    b = _bandpass(np.asarray(warped, np.float32))[sel]
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def _ecc(
    gb: npt.NDArray[np.uint8], gf: npt.NDArray[np.uint8], m_work: npt.NDArray[np.float64], mask: npt.NDArray[np.uint8]
) -> npt.NDArray[np.float64] | None:
    """ECC affine refinement of follow->base (work pixels); None when it does not converge."""
    # findTransformECC's warp maps template (base) coordinates to input (follow-up) coordinates.
    warp = invert(m_work).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
    try:
        _, found = cv2.findTransformECC(
            gb.astype(np.float32), gf.astype(np.float32), warp, cv2.MOTION_AFFINE, criteria, mask, 5
        )
    except cv2.error as e:  # does not converge on flat or very different images
        log.info("ECC refinement failed: %s", str(e).splitlines()[-1] if str(e) else e)
        return None
    return invert(found)


def register(
    base_image: npt.NDArray[np.uint8],
    follow_image: npt.NDArray[np.uint8],
    *,
    base_box: Box | None = None,
    follow_box: Box | None = None,
    base_landmarks: npt.ArrayLike | None = None,
    follow_landmarks: npt.ArrayLike | None = None,
    refine: bool = True,
    local: bool = True,
    work_px: int = WORK_PX,
) -> Registration:
    """Align a follow-up photo to the baseline photo of the same view.

    Args:
        base_image: HxWx3 uint8 RGB baseline photo.
        follow_image: HxWx3 uint8 RGB follow-up photo (any size).
        base_box: baseline face box ``(x, y, w, h)`` in photo pixels, or None (whole frame).
        follow_box: follow-up face box, or None.
        base_landmarks, follow_landmarks: (468, 2) face-mesh landmarks in photo pixels, or None.
        refine: run the ECC refinement.
        local: also measure the residual motion on the face (dense optical flow), which ``to_base`` uses to
            correct lesion positions locally.
        work_px: long side at which the work is done.

    Returns:
        The registration; ``matrix`` maps follow-up pixels to baseline pixels.
    """
    for name, im in (("base_image", base_image), ("follow_image", follow_image)):
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(f"{name} must be HxWx3 uint8 RGB, got {im.shape} {im.dtype}")
    sb = min(1.0, work_px / max(base_image.shape[:2]))
    sf = min(1.0, work_px / max(follow_image.shape[:2]))
    gb, gf = _gray(base_image, sb), _gray(follow_image, sf)
    mb = _box_mask(gb.shape, base_box, sb, 0.15)
    mf = _box_mask(gf.shape, follow_box, sf, 0.15)

    def full(m_work: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return (_scale_m(1 / sb) @ _h(m_work) @ _scale_m(sf))[:2]

    def work(m_full: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return (_scale_m(sb) @ _h(m_full) @ _scale_m(1 / sf))[:2]

    # Candidates in order of preference; the first about as good as the best (band-pass NCC) wins.
    cands: list[_Fit] = []
    if base_landmarks is not None and follow_landmarks is not None:
        lm_fit = _landmark_fit(np.asarray(base_landmarks) * sb, np.asarray(follow_landmarks) * sf)
        if lm_fit is not None and _plausible(lm_fit.matrix, sb, sf):
            cands.append(lm_fit)
    direct = _features(gb, gf, mb, mf)
    cands += [f for f in direct if f.n_inliers >= MIN_INLIERS and _plausible(f.matrix, sb, sf)]
    if max((f.n_inliers for f in direct), default=0) < CONFIDENT_INLIERS:
        # A mirrored follow-up (front-camera selfies, flipped exports) has no matching features as it is.
        flip = np.array([[-1.0, 0.0, gf.shape[1] - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        for f in _features(gb, np.ascontiguousarray(gf[:, ::-1]), mb, mf[:, ::-1]):
            m_flip = (_h(f.matrix) @ flip)[:2]
            src = None if f.src is None else np.column_stack([gf.shape[1] - 1.0 - f.src[:, 0], f.src[:, 1]])
            if f.n_inliers >= MIN_INLIERS and _plausible(m_flip, sb, sf):
                cands.append(replace(f, matrix=m_flip, src=None if src is None else src.astype(np.float32)))
    if base_box is not None and follow_box is not None:
        cands.append(_Fit(work(box_similarity(base_box, follow_box)), "face-box"))
    cands.append(_Fit(work(np.eye(2, 3)), "identity"))
    bp = _bandpass(gb.astype(np.float32))  # every candidate is scored against the same base
    scores = [_ncc(bp, gf, c.matrix, mb) for c in cands]
    k = next(k for k, q in enumerate(scores) if q >= max(scores) - 0.01)
    chosen, quality = cands[k], scores[k]
    m_work, method = chosen.matrix, chosen.method
    if refine:
        m_ecc = _ecc(gb, gf, m_work, mb)
        if m_ecc is not None and _plausible(m_ecc, sb, sf):
            q_ecc = _ncc(bp, gf, m_ecc, mb)
            # ECC refines; it must stay consistent with the feature matches (it can lock onto shading instead).
            resid_ecc = chosen.residual_of(m_ecc)
            consistent = resid_ecc is None or resid_ecc <= (chosen.residual_px or 0.0) + ECC_MAX_DRIFT_PX
            if q_ecc >= quality - 1e-3 and consistent:
                m_work, quality, method = m_ecc, q_ecc, method + "+ecc"
    flow = None
    if local and (method.startswith("features") or quality >= QUALITY_FAIR):
        flow = _residual_flow(gb, gf, m_work, mb, base_box, sb)
        quality = max(quality, _ncc(bp, gf, m_work, mb, flow))
    m = full(m_work)
    return Registration(
        matrix=(tuple(float(v) for v in m[0]), tuple(float(v) for v in m[1])),  # type: ignore[arg-type]
        method=method,
        n_matches=chosen.n_matches,
        n_inliers=chosen.n_inliers,
        residual_px=None if chosen.residual_px is None else chosen.residual_px / sb,
        quality=quality,
        flow=flow,
        flow_scale=sb,
    )


def _residual_flow(
    gb: npt.NDArray[np.uint8],
    gf: npt.NDArray[np.uint8],
    m_work: npt.NDArray[np.float64],
    mask: npt.NDArray[np.uint8],
    base_box: Box | None,
    sb: float,
) -> npt.NDArray[np.float32]:
    """Dense optical flow (Farneback) from the baseline to the affinely aligned follow-up, on the face only.

    Brightness is matched first (Farneback assumes it constant); motion larger than ``MAX_FLOW_FRAC`` of the
    face height is dropped as unreliable (a lesion that appeared, hair, a border).
    """
    h, w = gb.shape
    warped = cv2.warpAffine(gf, m_work, (w, h), flags=cv2.INTER_LINEAR)
    valid = cv2.warpAffine(np.full_like(gf, 255), m_work, (w, h), flags=cv2.INTER_NEAREST) > 0
    sel = cv2.erode((valid & (mask > 0)).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    flow = np.zeros((h, w, 2), np.float32)
    if sel.sum() < 400:
        return flow
    a, b = gb.astype(np.float32), warped.astype(np.float32)
    b = (b - b[sel].mean()) / max(float(b[sel].std()), 1e-3) * float(a[sel].std()) + float(a[sel].mean())
    b8 = np.clip(b, 0, 255).astype(np.uint8)
    # The flow is needed on the face only: work on its box with a margin of a few of Farneback's windows
    # (the face is a fifth of a typical frame, so this is several times faster than the whole frame).
    x0, y0, x1, y1 = crop_box(sel, FLOW_MARGIN_PX)
    box = (slice(y0, y1), slice(x0, x1))
    found = cv2.calcOpticalFlowFarneback(
        np.ascontiguousarray(gb[box]),
        np.ascontiguousarray(b8[box]),
        None,
        0.5,
        4,
        31,
        5,
        7,
        1.5,
        cv2.OPTFLOW_FARNEBACK_GAUSSIAN,
    )
    face_h = (base_box[3] * sb) if base_box is not None else 0.6 * h
    ok = sel[box] & (np.linalg.norm(found, axis=2) <= MAX_FLOW_FRAC * face_h)
    flow[box][ok] = found[ok]
    return flow
