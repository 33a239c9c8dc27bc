"""Face, view, head pose, the skin to count on, and facial regions, from 468 facial landmarks (no torch).

The landmarks come from MediaPipe's face detector and face mesh (``lesioncount.landmarks``). From them:

- **face box**: the landmarks' bounding box, with the forehead reaching above the mesh's top;
  **face height**: forehead top (landmark 10) to chin (152) in the image, which ignores roll and is
  the working scale's reference;
- **pose** (yaw, roll, pitch) from the face's own axes, and the **view**: ``front`` when the yaw is under
  ``FRONT_MAX_YAW_DEG``, else ``left`` or ``right``, the patient's side turned towards the camera;
- **skin**: the convex hull of the landmarks (forehead extended), minus eyes, brows, lips and nostrils,
  minus what fails a colour test (Lab, learnt on the same photo's cheeks and forehead) or a texture test
  (hair and beard are full of fine strands);
- **regions**: each landmark gets a region from its place in the face's own frame (forehead above the
  brows, nose, chin below the lower lip, cheeks by the patient's side), and each pixel takes the region
  of its nearest landmark, so regions follow the face at any pose.

Without landmarks there is no face: skin is then looked for in the whole frame by a generic skin-colour
and texture test, with a warning, and nothing found without a face is graded.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from lesioncount.landmarks import (
    BETWEEN_EYES,
    CHIN,
    FOREHEAD_TOP,
    LEFT_EYE_OUTER,
    RIGHT_EYE_OUTER,
    Landmarks,
    Pose,
    face_frame,
    find_face,
    head_pose,
)
from lesioncount.preprocess import crop_box
from lesioncount.types import REGIONS

log = logging.getLogger(__name__)

#: Skin and regions are worked out on a copy whose long side is at most this, then enlarged (speed).
ANALYSIS_LONG_SIDE_PX = 1024
#: Faces turned less than this are ``front``.
FRONT_MAX_YAW_DEG = 20.0
#: The forehead reaches above the mesh's top landmark by this share of the brow-to-top distance.
FOREHEAD_EXTENSION = 0.35
#: The landmarks' hull is grown by this share of the face height before the skin tests.
FACE_GROW = 0.06
#: Below this share of the frame, a face-less photo has no skin worth counting.
MIN_SKIN_FRACTION_NO_FACE = 0.02
#: A detection the mesh cannot fit is kept as a face only when its box looks like skin: at least this
#: share of the box neither dark nor clipped, at least ``MIN_BOX_CHROMA_SHARE`` of that within
#: ``BOX_CHROMA_RADIUS`` of the box's median chroma (YCrCb), and that median warm (Cr - Cb of at least
#: ``MIN_BOX_WARMTH``). On the ACNE04 *training* photos the mesh cannot fit, 146 of 151 boxes pass; of 66
#: non-faces the detector fires on (blurred colour noise, a colour wheel, a logo, a deep-sky photo), one
#: passes (a cat's face, whose fur is skin-coloured).
MIN_BOX_LIT_SHARE = 0.5
MIN_BOX_CHROMA_SHARE = 0.3
BOX_CHROMA_RADIUS = 8.0
MIN_BOX_WARMTH = 2.0
#: ... and only when its box spans at least this share of the frame's shorter side: the profiles and
#: close-ups the mesh cannot fit fill clinical photos (on 143 such ACNE04 training photos the smallest
#: box spanned 0.25 of it, 98% spanned 0.44 or more), while a blob the detector takes for a small face
#: (blurred colour noise: boxes from 0.08) does not.
MIN_FALLBACK_BOX_SHARE = 0.2

# MediaPipe face-mesh contours (landmark indices).
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_BROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
LEFT_BROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
NOSTRILS = (64, 98, 97, 2, 326, 327, 294, 278, 48)
#: Landmarks on the middle of each cheek and the forehead: where the skin colour is learnt.
SKIN_SAMPLES = {"right": (50, 205, 187, 123), "left": (280, 425, 411, 352), "forehead": (151, 108, 337)}


@dataclass(frozen=True)
class FaceAnalysis:
    """Face, skin and regions of one photo, at the resolution of the image analysed.

    Attributes:
        found: a face (landmarks) was found.
        box: ``(x, y, w, h)`` face box, or None.
        method: how the face was found, or ``none``.
        view: ``front``, ``left``, ``right`` (the patient's side facing the camera) or ``unknown``.
        skin: HxW bool, where lesions are counted.
        regions: HxW uint8, index into ``REGIONS`` (meaningful where ``skin``).
        warnings: plain-language problems found.
        view_confidence: 0.5 (on the boundary) to 1.0 (far from it); 0 when unknown.
        pose: head pose, or None without landmarks.
        landmarks: (468, 3) float32 landmarks in image pixels, or None.
        height_px: face height (forehead top to chin) in image pixels, or None.
    """

    found: bool
    box: tuple[int, int, int, int] | None
    method: str
    view: str
    skin: npt.NDArray[np.bool_]
    regions: npt.NDArray[np.uint8]
    warnings: tuple[str, ...] = field(default_factory=tuple)
    view_confidence: float = 0.0
    pose: Pose | None = None
    landmarks: npt.NDArray[np.float32] | None = None
    height_px: float | None = None

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


def _as_u8(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    """A boolean mask as 0/1 bytes for OpenCV, without a copy when it is contiguous (masks of 12 MP photos)."""
    return np.ascontiguousarray(mask).view(np.uint8)


def counting_area(face: FaceAnalysis, tolerance: float = 0.04) -> npt.NDArray[np.bool_]:
    """Where lesions are counted: the skin grown by ``tolerance`` x the face height.

    Lesions are redder or darker than skin and can fall just outside the colour test; growing the skin
    a little keeps them, while hair, background and the eyes stay out. Without a face, the skin itself.
    """
    if face.height_px is None or tolerance <= 0:
        return face.skin
    r = tolerance * face.height_px
    h, w = face.skin.shape
    f = min(1.0, ANALYSIS_LONG_SIDE_PX / max(h, w))
    skin = face.skin
    if f < 1.0:
        # The margin is tens of pixels on a large photo: work at the analysis size, then enlarge.
        small = (max(1, round(w * f)), max(1, round(h * f)))
        skin = cv2.resize(_as_u8(face.skin), small, interpolation=cv2.INTER_NEAREST).view(bool)
    # Distance to the nearest skin pixel: linear time whatever the radius (a large dilation kernel is not).
    dist = cv2.distanceTransform(_as_u8(~skin), cv2.DIST_L2, 3)
    area = dist <= r * f
    if f < 1.0:
        area = cv2.resize(_as_u8(area), (w, h), interpolation=cv2.INTER_NEAREST).view(bool)
        area |= face.skin  # the skin itself is always counted, whatever the rounding
    return area


def view_from_yaw(yaw_deg: float) -> tuple[str, float]:
    """``(view, confidence)``: ``front`` under ``FRONT_MAX_YAW_DEG``; confidence grows away from the boundary."""
    view = "front" if abs(yaw_deg) < FRONT_MAX_YAW_DEG else ("left" if yaw_deg > 0 else "right")
    margin = abs(abs(yaw_deg) - FRONT_MAX_YAW_DEG)
    return view, round(0.5 + 0.5 * math.tanh(margin / 8.0), 3)


def _sample_mask(
    points: npt.NDArray[np.float32], ids: tuple[int, ...], radius: float, hw: tuple[int, int]
) -> npt.NDArray[np.bool_]:
    mask = np.zeros(hw, np.uint8)
    for i in ids:
        cv2.circle(mask, (int(points[i, 0]), int(points[i, 1])), max(2, int(radius)), 1, -1)
    return mask.astype(bool)


def _skin_colour_mask(
    image: npt.NDArray[np.uint8], sample: npt.NDArray[np.bool_], max_distance: float = 3.5
) -> npt.NDArray[np.bool_]:
    """Pixels whose Lab colour is within ``max_distance`` (Mahalanobis) of the sampled skin."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    pix = lab[sample]
    if len(pix) < 20:
        return np.ones(image.shape[:2], bool)
    mean = pix.mean(0)
    # Lightness varies more across a face (shading) than chroma does: weight it down by widening its variance.
    cov = np.cov(pix.T) + np.diag([64.0, 4.0, 4.0])  # floors: a flat sample must not give a razor-thin model
    cov[0, :] *= 1.5
    cov[:, 0] *= 1.5
    inv = np.linalg.inv(cov).astype(np.float32)
    d = lab - mean.astype(np.float32)
    m2 = np.einsum("...i,ij,...j->...", d, inv, d)
    # Lesions are redder than skin: allow extra redness (a*) as long as lightness stays skin-like.
    d_l = d[..., 0] / np.sqrt(cov[0, 0])
    redder = (d[..., 1] > 0) & (np.abs(d_l) < max_distance) & (m2 < (max_distance * 2.5) ** 2)
    return np.asarray((m2 < max_distance**2) | redder)


def _smooth_mask(
    image: npt.NDArray[np.uint8], sample: npt.NDArray[np.bool_], window_px: int, factor: float = 3.0
) -> npt.NDArray[np.bool_]:
    """Pixels whose local edge density is skin-like; hair and beards are full of fine strands."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mag = np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    density = cv2.blur(mag, (window_px, window_px))
    ref = density[sample]
    if ref.size == 0:
        return np.ones(image.shape[:2], bool)
    return np.asarray(density <= factor * max(float(np.median(ref)), 4.0))


def _fill_small_holes(mask: npt.NDArray[np.bool_], max_hole_px: int) -> npt.NDArray[np.bool_]:
    inv = (~mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    small = np.zeros(n, bool)
    small[1:] = stats[1:, cv2.CC_STAT_AREA] <= max_hole_px
    # Holes touching the border are background, not holes.
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    small[border] = False
    return mask | small[labels]


def _skin_in_face(
    image: npt.NDArray[np.uint8],
    face: npt.NDArray[np.bool_],
    exclude: npt.NDArray[np.bool_],
    sample: npt.NDArray[np.bool_],
    height_px: float,
) -> npt.NDArray[np.bool_]:
    """The skin inside ``face``: colour and texture like ``sample``'s, small holes filled, ``exclude`` left out.

    The tests run on the face's bounding box only, with a margin wider than the texture window, so every
    pixel inside the face sees the same neighbourhood as on the whole frame (a small face in a large
    photo costs only its own pixels).
    """
    window = max(5, int(height_px / 24))
    out = np.zeros(face.shape, bool)
    if not face.any():
        return out
    x0, y0, x1, y1 = crop_box(face, window + 2)
    box = (slice(y0, y1), slice(x0, x1))
    image, face, exclude, sample = image[box], face[box], exclude[box], sample[box]
    colour = _skin_colour_mask(image, sample)
    smooth = _smooth_mask(image, sample, window_px=window)
    skin = face & ~exclude & colour & smooth
    skin = _fill_small_holes(skin, max_hole_px=int(0.0015 * height_px * height_px) + 20)
    skin = cv2.morphologyEx(skin.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    out[box] = skin & ~exclude
    return out


def analyse_face(image: npt.NDArray[np.uint8]) -> FaceAnalysis:
    """Find the face, its pose and view, the skin to count on and the facial regions.

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
    """The same analysis for the same photo at another size (masks by nearest neighbour, geometry scaled)."""
    h, w = shape_hw
    fx, fy = w / face.skin.shape[1], h / face.skin.shape[0]
    box = None
    if face.box is not None:
        bx, by, bw, bh = face.box
        box = (round(bx * fx), round(by * fy), round(bw * fx), round(bh * fy))
    skin = cv2.resize(_as_u8(face.skin), (w, h), interpolation=cv2.INTER_NEAREST).view(bool)
    regions = cv2.resize(face.regions, (w, h), interpolation=cv2.INTER_NEAREST)
    landmarks = None
    if face.landmarks is not None:
        landmarks = (face.landmarks * np.array([fx, fy, fx], np.float32)).astype(np.float32)
    height = face.height_px * (fx + fy) / 2 if face.height_px is not None else None
    return FaceAnalysis(
        face.found,
        box,
        face.method,
        face.view,
        skin,
        regions,
        face.warnings,
        face.view_confidence,
        face.pose,
        landmarks,
        height,
    )


def landmark_regions(points: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """The region (index into ``REGIONS``) of each of the 468 landmarks, from the face's own frame.

    The frame's x axis runs from the patient's right eye to the left eye, so the sides are the patient's
    own whatever the pose; a mirrored photo shows a mirrored face, and its sides swap with it.
    """
    r = face_frame(points)
    c = (points.astype(np.float64) - points[FOREHEAD_TOP]) @ r  # canonical coordinates
    iod = float(np.linalg.norm(c[LEFT_EYE_OUTER] - c[RIGHT_EYE_OUTER])) + 1e-6
    mid_x = float((c[RIGHT_EYE_OUTER, 0] + c[LEFT_EYE_OUTER, 0]) / 2)
    brow_y = float(np.mean(c[[70, 63, 105, 66, 107, 336, 296, 334, 293, 300], 1]))
    bridge_y = float(c[BETWEEN_EYES, 1])
    nose_bottom_y = float(c[2, 1])
    lip_bottom_y = float(c[17, 1])
    mouth_half = abs(float(c[291, 0] - c[61, 0])) / 2
    x, y = c[:, 0] - mid_x, c[:, 1]
    out = np.where(x < 0, REGIONS.index("right_cheek"), REGIONS.index("left_cheek")).astype(np.uint8)
    upper_lip = (y > nose_bottom_y) & (y <= lip_bottom_y) & (np.abs(x) < mouth_half)
    out[upper_lip] = REGIONS.index("other")
    out[(y > lip_bottom_y) & (np.abs(x) < 0.5 * iod)] = REGIONS.index("chin")
    out[(np.abs(x) < 0.2 * iod) & (y >= bridge_y) & (y <= nose_bottom_y)] = REGIONS.index("nose")
    out[y < brow_y] = REGIONS.index("forehead")
    return out


def _analyse(image: npt.NDArray[np.uint8]) -> FaceAnalysis:
    found = find_face(image)
    if found is None:
        return _no_face(image)
    lm, det = found
    if lm is not None:
        return _from_landmarks(image, lm)
    assert det is not None
    side = float(np.max(det[1] - det[0]))
    if side < MIN_FALLBACK_BOX_SHARE * min(image.shape[:2]) or not box_looks_like_skin(image, det[:2]):
        return _no_face(image)
    return _from_detection(image, det)


def box_looks_like_skin(image: npt.NDArray[np.uint8], box: npt.NDArray[np.float32]) -> bool:
    """Whether a detector box (``[[x0, y0], [x1, y1]]``) holds one skin-like colour, as a face does.

    The face detector also fires, at moderate scores, on blurred colour noise and other blobs; a box of
    many colours, a mostly dark box, or a grey one is not a face (see ``MIN_BOX_LIT_SHARE``).
    """
    h, w = image.shape[:2]
    x0, y0 = max(0, int(box[0, 0])), max(0, int(box[0, 1]))
    x1, y1 = min(w, int(np.ceil(box[1, 0]))), min(h, int(np.ceil(box[1, 1])))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return False
    ycc = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2YCrCb).reshape(-1, 3)
    lit = (ycc[:, 0] > 40) & (ycc[:, 0] < 250)
    if lit.mean() < MIN_BOX_LIT_SHARE:
        return False
    chroma = ycc[lit, 1:].astype(np.float32)
    cr, cb = np.median(chroma, axis=0)
    share = float((np.linalg.norm(chroma - (cr, cb), axis=1) < BOX_CHROMA_RADIUS).mean())
    return share >= MIN_BOX_CHROMA_SHARE and cr - cb >= MIN_BOX_WARMTH and cr <= 180 and cb >= 77


def _no_face(image: npt.NDArray[np.uint8]) -> FaceAnalysis:
    """No face: the skin of the whole frame by a generic colour and texture test, never the whole frame."""
    h, w = image.shape[:2]
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    y, cr, cb = ycc[..., 0], ycc[..., 1], ycc[..., 2]
    colour = (y > 40) & (cr > 135) & (cr < 180) & (cb > 80) & (cb < 135)
    gray = y.astype(np.float32)
    k = max(5, min(h, w) // 60) | 1
    mean = cv2.blur(gray, (k, k))
    std = np.sqrt(np.maximum(cv2.blur(gray * gray, (k, k)) - mean * mean, 0))
    skin = colour & (std < 18)
    skin = cv2.morphologyEx(skin.astype(np.uint8), cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(skin, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= 0.01 * h * w
    mask = keep[labels]
    regions = np.full((h, w), REGIONS.index("other"), np.uint8)
    if mask.mean() < MIN_SKIN_FRACTION_NO_FACE:
        notes = ("no face and no skin found: nothing counted, no grade",)
        return FaceAnalysis(False, None, "none", "unknown", np.zeros((h, w), bool), regions, notes)
    notes = (
        "no face found: counted on skin-coloured areas of the whole frame (close-up assumed), not graded; "
        "check the marks",
    )
    return FaceAnalysis(False, None, "skin-colour", "unknown", mask, regions, notes)


#: Face height (landmark 10 to 152) per detector-box height, measured on ACNE04 valid photos with both.
HEIGHT_PER_DETECTION_BOX = 1.0


def _from_detection(image: npt.NDArray[np.uint8], det: npt.NDArray[np.float32]) -> FaceAnalysis:
    """A face the detector found but the mesh could not fit (a full profile): geometry from its keypoints.

    The box and six keypoints (eyes, nose tip, mouth, ear tragions) give the face height, a rough yaw
    from where the nose tip sits in the box, an ellipse for the face, and regions by bands.
    """
    h, w = image.shape[:2]
    (bx0, by0), (bx1, by1) = det[0], det[1]
    eye_r, eye_l, nose, mouth, ear_r, ear_l = det[2], det[3], det[4], det[5], det[6], det[7]
    bw, bh = float(bx1 - bx0), float(by1 - by0)
    cx = float(bx0 + bx1) / 2
    # The ear far from the nose tip is the one turned towards the camera: the patient's left ear far
    # from the nose means the left side faces the camera (yaw > 0). On ACNE04's half faces the ratio
    # reaches about +-0.8 for full profiles.
    d_r, d_l = float(np.linalg.norm(nose - ear_r)), float(np.linalg.norm(nose - ear_l))
    ratio = (d_l - d_r) / max(d_l + d_r, 1e-6)
    yaw = math.degrees(math.asin(float(np.clip(ratio / 0.8, -1.0, 1.0))))
    view, view_conf = view_from_yaw(yaw)
    view_conf = min(view_conf, 0.75)  # keypoints alone are a rougher guide than the mesh
    d = eye_l - eye_r
    roll = math.degrees(math.atan2(float(d[1]), float(d[0])))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xx - cx) / bw
    v = (yy - float(by0)) / bh
    ellipse = (u / 0.6) ** 2 + ((v - 0.45) / 0.68) ** 2 <= 1.0
    eye_y = (float(eye_r[1] + eye_l[1]) / 2 - float(by0)) / bh
    mouth_y = (float(mouth[1]) - float(by0)) / bh
    exclude = np.zeros((h, w), np.uint8)
    r_feat = max(2, int(0.09 * bw))
    for p in (eye_r, eye_l, mouth):
        cv2.circle(exclude, (int(p[0]), int(p[1])), r_feat, 1, -1)
    cheek = (float(nose[0] + (cx - nose[0]) * 0.9), float(by0 + 0.5 * (eye_y + mouth_y) * bh))
    forehead = (cx, float(by0 + max(0.02, eye_y - 0.18) * bh))
    sample = np.zeros((h, w), np.uint8)
    for p in (cheek, forehead):
        cv2.circle(sample, (int(p[0]), int(p[1])), max(2, int(0.08 * bw)), 1, -1)
    skin = _skin_in_face(image, ellipse, exclude.astype(bool), sample.astype(bool) & ellipse, bh)
    regions = np.full((h, w), REGIONS.index("other"), np.uint8)
    if view == "front":
        cheeks = np.where(xx < float(nose[0]), REGIONS.index("right_cheek"), REGIONS.index("left_cheek"))
    else:
        cheeks = np.full((h, w), REGIONS.index("left_cheek" if view == "left" else "right_cheek"))
    regions[:] = cheeks
    regions[(np.abs(xx - float(nose[0])) < 0.12 * bw) & (v > eye_y) & (yy < float(nose[1]) + 0.03 * bh)] = (
        REGIONS.index("nose")
    )
    regions[(v > mouth_y + 0.08) & (np.abs(xx - float(mouth[0])) < 0.3 * bw)] = REGIONS.index("chin")
    regions[v < eye_y - 0.1] = REGIONS.index("forehead")
    height = HEIGHT_PER_DETECTION_BOX * bh
    box = (max(0, int(bx0)), max(0, int(by0 - 0.1 * bh)), int(bw), int(1.1 * bh))
    warnings = ("face landmarks could not be fitted (a full profile?): skin and regions from the face box",)
    return FaceAnalysis(
        True, box, "detector-keypoints", view, skin, regions, warnings, view_conf, Pose(yaw, roll, 0.0), None, height
    )


def _from_landmarks(image: npt.NDArray[np.uint8], lm: Landmarks) -> FaceAnalysis:
    h, w = image.shape[:2]
    pts = lm.points
    pose = head_pose(pts)
    view, view_conf = view_from_yaw(pose.yaw_deg)
    frame = face_frame(pts)
    up = -frame[:2, 1] / (np.linalg.norm(frame[:2, 1]) + 1e-9)  # image direction from chin to forehead
    height = float(np.linalg.norm(pts[CHIN, :2] - pts[FOREHEAD_TOP, :2]))
    iod = float(np.linalg.norm(pts[LEFT_EYE_OUTER, :2] - pts[RIGHT_EYE_OUTER, :2]))
    # Extend the forehead: the mesh stops below the hairline.
    brow_xy = pts[list(RIGHT_BROW + LEFT_BROW), :2].mean(0)
    above = np.clip((brow_xy - pts[:, :2]) @ up, 0, None)
    extended = pts[:, :2] + np.outer(above * FOREHEAD_EXTENSION, up)
    hull_pts = np.concatenate([pts[:, :2], extended]).astype(np.float32)
    hull = cv2.convexHull(hull_pts).astype(np.int32)
    face_mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(face_mask, hull, 1)
    # The mesh stops short of the ear and the jaw's edge on a turned face; the skin tests trim the rest.
    grow = max(1, int(FACE_GROW * height))
    face_mask = cv2.dilate(face_mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    x0, y0 = np.floor(hull_pts.min(0)).astype(int)
    x1, y1 = np.ceil(hull_pts.max(0)).astype(int)
    box = (max(0, int(x0)), max(0, int(y0)), int(min(w, x1) - max(0, x0)), int(min(h, y1) - max(0, y0)))

    exclude = np.zeros((h, w), np.uint8)
    for ids, margin in ((RIGHT_EYE, 0.12), (LEFT_EYE, 0.12), (RIGHT_BROW, 0.05), (LEFT_BROW, 0.05), (LIPS, 0.03)):
        poly = cv2.convexHull(pts[list(ids), :2].astype(np.float32)).astype(np.int32)
        cv2.fillConvexPoly(exclude, poly, 1)
        g = max(1, int(margin * iod))
        cv2.polylines(exclude, [poly], True, 1, thickness=2 * g)
    nostrils = cv2.convexHull(pts[list(NOSTRILS), :2].astype(np.float32)).astype(np.int32)
    cv2.fillConvexPoly(exclude, nostrils, 1)

    # The visible cheek(s) and the forehead teach the colour and texture of this face's skin.
    sides = ["forehead"] + (["right", "left"] if view == "front" else [view])
    sample_ids = tuple(i for s in sides for i in SKIN_SAMPLES[s])
    sample = _sample_mask(pts, sample_ids, 0.12 * iod, (h, w)) & face_mask.astype(bool) & ~exclude.astype(bool)
    skin = _skin_in_face(image, face_mask.astype(bool), exclude.astype(bool), sample, height)

    # Regions: each pixel takes the region of its nearest landmark.
    labels_img = np.ones((h, w), np.uint8)
    ix = np.clip(pts[:, 0].round().astype(int), 0, w - 1)
    iy = np.clip(pts[:, 1].round().astype(int), 0, h - 1)
    labels_img[iy, ix] = 0
    _, nearest = cv2.distanceTransformWithLabels(labels_img, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    # Label k (1-based) is the k-th zero pixel in row-major order: map it back to its landmark.
    order = np.flatnonzero(labels_img.ravel() == 0)
    lm_of_pixel = np.full(h * w, -1, np.int64)
    lm_of_pixel[iy * w + ix] = np.arange(len(pts))
    label_to_region = np.concatenate([[REGIONS.index("other")], landmark_regions(pts)[lm_of_pixel[order]]])
    regions = label_to_region[nearest].astype(np.uint8)
    regions[~face_mask.astype(bool)] = REGIONS.index("other")  # off the face: no region

    warnings = []
    if skin.sum() < 0.2 * face_mask.sum():
        warnings.append("little of the face looks like skin (lighting or colour cast?): counts may be low")
    if lm.method == "mesh-whole-frame":
        warnings.append("face detector found nothing; landmarks fitted to the whole frame (close-up assumed)")
    return FaceAnalysis(
        True,
        box,
        lm.method,
        view,
        skin,
        regions,
        tuple(warnings),
        view_conf,
        pose,
        pts,
        height,
    )
