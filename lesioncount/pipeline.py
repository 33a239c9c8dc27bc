"""The counting core: photo -> face and skin -> working scale -> tiled ONNX inference -> lesions, counts, grades.

``LesionCounter`` holds one ONNX Runtime session; reuse it for many photos. ``count_lesions`` is the
one-call form. Imports no torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from lesioncount.count import count_by_class, count_by_region, decode_lesions, grades, soft_marks
from lesioncount.face import FaceAnalysis, analyse_face, counting_area, resize_analysis
from lesioncount.infer import Predictor, resolve_model_path
from lesioncount.io import DEFAULT_MAX_MEGAPIXELS, LoadedImage, load_image, looks_gray
from lesioncount.landmarks import BETWEEN_EYES, LEFT_EYE_OUTER, RIGHT_EYE_OUTER
from lesioncount.preprocess import CountingFrame, counting_frame, working_scale
from lesioncount.types import (
    ACNE_CLASSES,
    NEAR_THRESHOLD_FRACTION,
    REGIONS,
    CountResult,
    FaceInfo,
    ImageInfo,
    Lesion,
    ModelInfo,
)

log = logging.getLogger(__name__)

#: Working-scale margin around the skin's bounding box (context for lesions at the skin's edge).
ROI_MARGIN_PX = 24
#: Decode JPEGs at reduced size while the shorter side keeps at least this many pixels.
DECODE_MIN_SHORT_SIDE_PX = 1000


@contextlib.contextmanager
def _timed(timing: dict[str, float], stage: str) -> Iterator[None]:
    """Add the wall time of the block to ``timing[stage]``."""
    t = time.perf_counter()
    try:
        yield
    finally:
        timing[stage] = timing.get(stage, 0.0) + time.perf_counter() - t


def _exposure_warnings(image: npt.NDArray[np.uint8], skin: npt.NDArray[np.bool_]) -> list[str]:
    out = []
    if skin.any():
        lum = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[skin]
        med = float(np.median(lum))
        if med < 50:
            out.append(f"skin is dark (median luminance {med:.0f}/255): underexposed photos hide lesions")
        elif med > 225:
            out.append(f"skin is very bright (median luminance {med:.0f}/255): overexposed photos hide lesions")
        clipped = float((lum >= 250).mean())
        if clipped > 0.05:
            out.append(f"{clipped:.0%} of the skin is clipped white (flash glare?)")
    return out


def working_crop(
    pixels: npt.NDArray[np.uint8], face: FaceAnalysis, scale: float, decode_scale: float = 1.0
) -> tuple[npt.NDArray[np.uint8], CountingFrame, npt.NDArray[np.bool_]]:
    """What the network sees: the counting area's box (plus a margin) resized to the working scale.

    Args:
        pixels: the decoded photo, HxWx3 uint8 RGB.
        face: its analysis at the resolution of ``pixels``.
        scale: working pixels per pixel of ``pixels``.
        decode_scale: pixels of ``pixels`` per photo pixel.

    Returns:
        ``(work, frame, area)``: the working image, the counting frame that maps it to the photo and
        back, and the counting area (HxW bool at the resolution of ``pixels``).
    """
    area = counting_area(face)
    frame = counting_frame(area, scale, ROI_MARGIN_PX, decode_scale)
    return frame.apply(pixels), frame, area


def whole_frame_analysis(shape_hw: tuple[int, int]) -> FaceAnalysis:
    """A face analysis that counts the whole frame: no face, every pixel skin, region ``other``."""
    h, w = shape_hw
    note = "counting the whole frame as asked (no face or skin test): check the marks"
    return FaceAnalysis(
        False,
        None,
        "whole-frame",
        "unknown",
        np.ones((h, w), bool),
        np.full((h, w), REGIONS.index("other"), np.uint8),
        (note,),
    )


def _worse_half(lesions: list[Lesion], landmarks: tuple[tuple[float, float], ...]) -> int:
    """Acne lesions on the worse half of a frontal face, split by the face's own midline (roll-proof)."""
    pts = np.asarray(landmarks, np.float64)
    mid = pts[BETWEEN_EYES]
    axis = pts[LEFT_EYE_OUTER] - pts[RIGHT_EYE_OUTER]
    acne = [les for les in lesions if les.cls in ACNE_CLASSES]
    left = sum(float((np.array([les.x, les.y]) - mid) @ axis) >= 0 for les in acne)
    return max(left, len(acne) - left)


def _face_info(face: FaceAnalysis, decode_scale: float, scale: float) -> FaceInfo:
    to_photo = 1.0 / decode_scale
    box = None if face.box is None else tuple(int(round(v * to_photo)) for v in face.box)
    landmarks = None
    if face.landmarks is not None:
        landmarks = tuple((round(float(x) * to_photo, 1), round(float(y) * to_photo, 1)) for x, y, _ in face.landmarks)
    pose = face.pose
    return FaceInfo(
        found=face.found,
        box=box,  # type: ignore[arg-type]
        method=face.method,
        view=face.view,
        skin_fraction=round(face.skin_fraction, 4),
        scale=round(scale, 5),
        view_confidence=face.view_confidence,
        yaw_deg=None if pose is None else round(pose.yaw_deg, 1),
        roll_deg=None if pose is None else round(pose.roll_deg, 1),
        pitch_deg=None if pose is None else round(pose.pitch_deg, 1),
        height_px=None if face.height_px is None else round(face.height_px * to_photo, 1),
        landmarks=landmarks,
    )


def grade_block(lesions: list[Lesion], face: FaceInfo, *, gradable: bool = True) -> dict[str, object]:
    """Grades for a count: the worse half of a frontal face; the half face of a lateral one; none off a face.

    Nothing that is not known to be a face is graded: a photo where no face was found is counted on its
    skin-coloured areas but gets no grade (a coffee cup's skin-coloured share is as large as a cheek
    close-up's), unless the user asked for the whole frame to be counted (``whole_frame``: a close-up
    they vouch for). ``gradable=False`` (damaged or grayscale pixels) gives no grade either.
    """
    if not gradable:
        return grades(lesions, regions_known=False, graded=False)
    frontal = face.found and face.view == "front" and face.landmarks is not None
    if frontal and face.landmarks is not None:
        return grades(
            lesions,
            regions_known=True,
            hayashi_count=_worse_half(lesions, face.landmarks),
            hayashi_basis="worse half of a frontal photo",
        )
    if face.method == "whole-frame":  # the user vouched for a close-up (``whole_frame``)
        return grades(lesions, regions_known=False, hayashi_basis="whole frame, as asked (no face test)")
    return grades(lesions, regions_known=False, graded=face.found)


class LesionCounter:
    """Counts lesions in photos with one loaded model.

    Args:
        model: path to a .onnx model; None uses ``$LESIONCOUNT_MODEL`` or the shipped model.
        int8: use the shipped int8 model (ignored when ``model`` is given).
        threads: ONNX Runtime threads (None: all cores).
        threshold: one score threshold for every class, overriding the model's calibrated ones.
        max_megapixels: refuse photos larger than this.
        whole_frame: count everywhere in the frame at the frame's scale, with no face or skin test (for
            close-ups the user vouches for, and for tests of the counting mechanics); a warning says so.
        flip_average: average the network's output on the photo and on its mirror image (test-time flip
            averaging; about doubles the network's time); None: as the model's contract says (its
            thresholds were calibrated that way).
        heat_sigma: smooth the heatmaps before peaks are picked (output pixels); None: as the contract says.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        int8: bool = False,
        threads: int | None = None,
        threshold: float | None = None,
        max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
        whole_frame: bool = False,
        flip_average: bool | None = None,
        heat_sigma: float | None = None,
        count_softness: float | None = None,
    ) -> None:
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        self.predictor = Predictor(
            resolve_model_path(model, int8=int8), threads=threads, flip_average=flip_average, heat_sigma=heat_sigma
        )
        self.spec = self.predictor.spec
        self.thresholds = (
            dict.fromkeys(self.spec.classes, threshold) if threshold is not None else dict(self.spec.thresholds)
        )
        if count_softness is None:  # a threshold the user gives is a hard threshold on every peak
            count_softness = self.spec.count_softness if threshold is None else 0.0
        if not count_softness >= 0:
            raise ValueError(f"count_softness must be 0 (off) or positive, got {count_softness}")
        self.count_softness = float(count_softness)
        self.max_megapixels = max_megapixels
        self.whole_frame = whole_frame
        self.model_info = ModelInfo(
            self.spec.name,
            self.spec.version,
            self.predictor.sha256,
            thresholds=dict(self.thresholds),
            count_softness=self.count_softness or None,
        )

    def _decode(self, image: str | os.PathLike[str] | npt.NDArray[np.uint8], name: str | None) -> LoadedImage:
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"image array must be HxWx3 uint8 RGB, got {image.shape} {image.dtype}")
            digest = hashlib.sha256(image.tobytes()).hexdigest()
            h, w = image.shape[:2]
            return LoadedImage(image, w, h, 1.0, digest, grayscale=looks_gray(image))
        return load_image(image, max_megapixels=self.max_megapixels, min_short_side_px=DECODE_MIN_SHORT_SIDE_PX)

    def count(
        self,
        image: str | os.PathLike[str] | npt.NDArray[np.uint8],
        *,
        name: str | None = None,
        face: FaceAnalysis | None = None,
    ) -> CountResult:
        """Count the lesions of one photo.

        The stages: decode, face (landmarks, skin, regions), counting frame (crop and working scale),
        inference, lesions mapped back through the frame's inverse, grades.

        Args:
            image: a photo path, or an HxWx3 uint8 RGB array as a viewer shows it.
            name: the path to record for an array input.
            face: the face analysis to count with instead of the face stage's own (an array input of the
                analysis's size only): its skin, regions and face height set where and at what scale the
                photo is counted. Visit comparison counts a follow-up aligned to its baseline this way, on
                the baseline's skin at the baseline's scale.

        Returns:
            The result; coordinates are in the photo's pixels.

        Raises:
            lesioncount.io.ImageReadError: the photo cannot be read (the message says why).
        """
        timing: dict[str, float] = {}
        path = None if isinstance(image, np.ndarray) else Path(image)
        with _timed(timing, "decode"):
            loaded = self._decode(image, name)
        info = ImageInfo(
            str(path) if path is not None else name or "<array>", loaded.width, loaded.height, loaded.sha256
        )
        if face is None:
            loaded, face, scale = self._face_stage(loaded, path, timing)
        elif path is not None or face.skin.shape != loaded.image.shape[:2]:
            raise ValueError("a given face analysis needs an array image of the analysis's size")
        else:
            scale = working_scale(face.height_px, loaded.image.shape[:2], self.spec.face_height_px)
        scale, warnings = self._checks(loaded, face, scale)
        lesions: list[Lesion] = []
        near: list[Lesion] = []
        expected = None
        frame = None
        expert_marks: list[Lesion] = []
        with _timed(timing, "preprocess"):
            if face.skin.any():
                work, frame, area = working_crop(loaded.image, face, scale, loaded.decode_scale)
        if frame is not None:
            with _timed(timing, "inference"):
                heat, log_size, experts = self.predictor.predict_all(work)
            with _timed(timing, "postprocess"):
                if self.count_softness > 0:
                    lesions, near, expected = self._soft(heat, log_size, frame, area, face)
                else:
                    lesions = self._lesions(heat, log_size, frame, area, face, self.thresholds)
                    near = self._near_threshold(heat, log_size, frame, area, face, lesions)
                if experts is not None and self.spec.expert_threshold > 0:
                    expert_marks = self._lesions(
                        experts, log_size, frame, area, face, {"acne": self.spec.expert_threshold}, ("acne",)
                    )
        face_info = _face_info(face, loaded.decode_scale, frame.scale if frame else scale * loaded.decode_scale)
        timing["total"] = sum(timing.values())
        return CountResult(
            image=info,
            model=self.model_info,
            face=face_info,
            lesions=tuple(lesions),
            counts=count_by_class(lesions),
            counts_by_region=count_by_region(lesions),
            grades=grade_block(lesions, face_info, gradable=loaded.gradable),
            warnings=tuple(warnings),
            timing_s=timing,
            near_threshold=tuple(near),
            acne_expected=expected,
            expert_marks=tuple(expert_marks),
        )

    def _soft(
        self,
        heat: npt.NDArray[np.float32],
        log_size: npt.NDArray[np.float32],
        frame: CountingFrame,
        area: npt.NDArray[np.bool_],
        face: FaceAnalysis,
    ) -> tuple[list[Lesion], list[Lesion], float]:
        """A soft acne count (``ModelSpec.count_softness``): the acne peaks scoring at least
        ``NEAR_THRESHOLD_FRACTION`` of their threshold each count the chance that they are lesions, and the
        marks are the rounded sum's number of the strongest of them. Other classes keep their hard thresholds.

        The near-threshold peaks are the other acne peaks down to ``NEAR_THRESHOLD_FRACTION`` of the threshold
        or of the weakest mark, whichever is lower: a mark scoring under the threshold keeps the same band
        of hysteresis below it that a mark at the threshold has.

        Returns:
            ``(lesions, near_threshold, expected)``, ``expected`` the unrounded expected acne count.
        """
        f = NEAR_THRESHOLD_FRACTION
        floor = {k: v * f * f if k in ACNE_CLASSES else v for k, v in self.thresholds.items()}
        found = self._lesions(heat, log_size, frame, area, face, floor)
        lesions, expected = soft_marks(found, self.thresholds, self.count_softness)
        marked = {id(les) for les in lesions}
        weakest = min((les.score for les in lesions if les.cls in ACNE_CLASSES), default=1.0)
        near = [
            les
            for les in found
            if les.cls in ACNE_CLASSES
            and id(les) not in marked
            and les.score >= f * min(self.thresholds[les.cls], weakest)
        ]
        return lesions, near, expected

    def _near_threshold(
        self,
        heat: npt.NDArray[np.float32],
        log_size: npt.NDArray[np.float32],
        frame: CountingFrame,
        area: npt.NDArray[np.bool_],
        face: FaceAnalysis,
        counted: list[Lesion],
    ) -> list[Lesion]:
        """Peaks scoring at least ``NEAR_THRESHOLD_FRACTION`` of their class threshold but under it, away from
        the counted lesions: not counted, kept for visit comparison's hysteresis."""
        low = {k: v * NEAR_THRESHOLD_FRACTION for k, v in self.thresholds.items()}
        out = []
        for les in self._lesions(heat, log_size, frame, area, face, low):
            if les.score >= self.thresholds[les.cls]:
                continue
            if any(abs(les.x - c.x) <= c.bbox[2] / 2 and abs(les.y - c.y) <= c.bbox[3] / 2 for c in counted):
                continue  # the same place as a counted lesion (its peak in another class)
            out.append(les)
        return out

    def _face_stage(
        self, loaded: LoadedImage, path: Path | None, timing: dict[str, float]
    ) -> tuple[LoadedImage, FaceAnalysis, float]:
        """Face, skin and regions, and the working scale; a small face in a reduced JPEG decode is decoded
        again at the next reduced size that needs no enlarging (full size only when nothing smaller will do)."""
        with _timed(timing, "face"):
            face = whole_frame_analysis(loaded.image.shape[:2]) if self.whole_frame else analyse_face(loaded.image)
        scale = working_scale(face.height_px, loaded.image.shape[:2], self.spec.face_height_px)
        if scale > 1.0 and loaded.decode_scale < 1.0 and path is not None:
            with _timed(timing, "decode"):
                need = loaded.decode_scale * scale
                bigger = load_image(path, max_megapixels=self.max_megapixels, min_decode_scale=need)
            scale /= bigger.decode_scale / loaded.decode_scale
            face = resize_analysis(face, bigger.image.shape[:2])
            loaded = bigger
        return loaded, face, scale

    def _checks(self, loaded: LoadedImage, face: FaceAnalysis, scale: float) -> tuple[float, list[str]]:
        """The working scale bounded by ``max_megapixels``, and the photo's quality warnings."""
        warnings = [*loaded.notes, *face.warnings]
        h, w = loaded.image.shape[:2]
        work_mp = h * w * scale**2 / 1e6
        if work_mp > self.max_megapixels:
            # The working size is bounded like the photo: a tiny "face" never blows up time and memory.
            scale *= (self.max_megapixels / work_mp) ** 0.5
            warnings.append(
                f"the working image would be {work_mp:.0f} megapixels (over --max-megapixels); counted smaller"
            )
        if loaded.damaged is not None:
            warnings.append(f"damaged image data ({loaded.damaged}): counted as decoded, not graded")
        if loaded.grayscale:
            warnings.append("grayscale photo: the model needs colour (redness), counts are unreliable; not graded")
        if scale > 2.0 and face.found:
            warnings.append(
                f"face is small ({self.spec.face_height_px / scale:.0f} px high): enlarged {scale:.1f}x, "
                "small lesions may be missed"
            )
        return scale, warnings + _exposure_warnings(loaded.image, face.skin)

    def _lesions(
        self,
        heat: npt.NDArray[np.float32],
        log_size: npt.NDArray[np.float32],
        frame: CountingFrame,
        area: npt.NDArray[np.bool_],
        face: FaceAnalysis,
        thresholds: dict[str, float],
        classes: tuple[str, ...] | None = None,
    ) -> list[Lesion]:
        """Peaks -> lesions in photo pixels, through the counting frame's inverse; off-area peaks dropped.
        ``classes`` names the channels of ``heat`` (the model's classes by default)."""
        found = decode_lesions(heat, log_size, thresholds, classes or self.spec.classes, stride=self.spec.output_stride)
        if not found:
            return []
        centres = np.array([(xw, yw) for _, xw, yw, *_ in found])
        decoded = frame.work_to_decoded(centres)
        photo = decoded / frame.decode_scale
        sizes = frame.sizes_to_photo(np.array([(bw, bh) for *_, bw, bh, _ in found]))
        lesions = []
        for (cls, *_, score), (xd, yd), (x_ph, y_ph), (w_ph, h_ph) in zip(found, decoded, photo, sizes, strict=True):
            ix, iy = int(xd), int(yd)
            if not (0 <= iy < area.shape[0] and 0 <= ix < area.shape[1] and area[iy, ix]):
                continue
            lesions.append(
                Lesion(
                    cls=cls,
                    x=float(x_ph),
                    y=float(y_ph),
                    area_px=float(np.pi / 4 * w_ph * h_ph),
                    bbox=(float(x_ph - w_ph / 2), float(y_ph - h_ph / 2), float(w_ph), float(h_ph)),
                    score=float(score),
                    region=face.region_at(xd, yd),
                )
            )
        lesions.sort(key=lambda les: (les.y, les.x))
        return lesions


_DEFAULT: dict[tuple[object, ...], LesionCounter] = {}


def count_lesions(
    image: str | os.PathLike[str] | npt.NDArray[np.uint8],
    *,
    model: str | os.PathLike[str] | None = None,
    int8: bool = False,
    threads: int | None = None,
    threshold: float | None = None,
) -> CountResult:
    """Count the lesions of one photo (a path or an HxWx3 uint8 RGB array); see ``LesionCounter``.

    The loaded model is cached per argument set, so repeated calls do not reload it.
    """
    key = (str(model) if model else None, int8, threads, threshold)
    if key not in _DEFAULT:
        _DEFAULT[key] = LesionCounter(model, int8=int8, threads=threads, threshold=threshold)
    return _DEFAULT[key].count(image)
