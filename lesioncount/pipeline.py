"""The counting core: photo -> face and skin -> working scale -> tiled ONNX inference -> lesions, counts, grades.

``LesionCounter`` holds one ONNX Runtime session; reuse it for many photos. ``count_lesions`` is the
one-call form. Imports no torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from lesioncount.count import count_by_class, count_by_region, decode_lesions, grades
from lesioncount.face import FaceAnalysis, analyse_face, counting_area, resize_analysis
from lesioncount.infer import Predictor, resolve_model_path
from lesioncount.io import DEFAULT_MAX_MEGAPIXELS, load_image
from lesioncount.preprocess import crop_box, resize, working_scale
from lesioncount.types import ACNE_CLASSES, CountResult, FaceInfo, ImageInfo, Lesion, ModelInfo

log = logging.getLogger(__name__)

#: Working-scale margin around the skin's bounding box (context for lesions at the skin's edge).
ROI_MARGIN_PX = 24
#: Decode JPEGs at reduced size while the shorter side keeps at least this many pixels.
DECODE_MIN_SHORT_SIDE_PX = 1000


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
    pixels: npt.NDArray[np.uint8], face: FaceAnalysis, scale: float
) -> tuple[npt.NDArray[np.uint8], tuple[int, int, int, int], npt.NDArray[np.bool_]]:
    """What the network sees: the counting area's box (plus a margin) resized to the working scale.

    Returns:
        ``(work, (x0, y0, x1, y1), area)``: the working image, its box in ``pixels`` and the counting area
        (HxW bool at the resolution of ``pixels``).
    """
    area = counting_area(face)
    x0, y0, x1, y1 = crop_box(area, margin_px=max(1, int(ROI_MARGIN_PX / scale)))
    return resize(np.ascontiguousarray(pixels[y0:y1, x0:x1]), scale), (x0, y0, x1, y1), area


class LesionCounter:
    """Counts lesions in photos with one loaded model.

    Args:
        model: path to a .onnx model; None uses ``$LESIONCOUNT_MODEL`` or the shipped model.
        int8: use the shipped int8 model (ignored when ``model`` is given).
        threads: ONNX Runtime threads (None: all cores).
        threshold: one score threshold for every class, overriding the model's calibrated ones.
        max_megapixels: refuse photos larger than this.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        int8: bool = False,
        threads: int | None = None,
        threshold: float | None = None,
        max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    ) -> None:
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        self.predictor = Predictor(resolve_model_path(model, int8=int8), threads=threads)
        self.spec = self.predictor.spec
        self.thresholds = (
            dict.fromkeys(self.spec.classes, threshold) if threshold is not None else dict(self.spec.thresholds)
        )
        self.max_megapixels = max_megapixels
        self.model_info = ModelInfo(self.spec.name, self.spec.version, self.predictor.sha256)

    def count(self, image: str | os.PathLike[str] | npt.NDArray[np.uint8], *, name: str | None = None) -> CountResult:
        """Count the lesions of one photo.

        Args:
            image: a photo path, or an HxWx3 uint8 RGB array as a viewer shows it.
            name: the path to record for an array input.

        Returns:
            The result; coordinates are in the photo's pixels.

        Raises:
            lesioncount.io.ImageReadError: the photo cannot be read (the message says why).
        """
        timing: dict[str, float] = {}
        t = time.perf_counter()
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"image array must be HxWx3 uint8 RGB, got {image.shape} {image.dtype}")
            pixels, decode_scale = image, 1.0
            info = ImageInfo(
                name or "<array>", image.shape[1], image.shape[0], hashlib.sha256(image.tobytes()).hexdigest()
            )
            path = None
        else:
            path = Path(image)
            loaded = load_image(path, max_megapixels=self.max_megapixels, min_short_side_px=DECODE_MIN_SHORT_SIDE_PX)
            pixels, decode_scale = loaded.image, loaded.decode_scale
            info = ImageInfo(str(path), loaded.width, loaded.height, loaded.sha256)
        timing["decode"] = time.perf_counter() - t

        t = time.perf_counter()
        face = analyse_face(pixels)
        timing["face"] = time.perf_counter() - t
        box_h = face.box[3] if face.box else None
        scale = working_scale(box_h, pixels.shape[:2], self.spec.face_height_px)
        if scale > 1.0 and decode_scale < 1.0 and path is not None:
            # The face is small: the reduced decode would be enlarged again. Decode at full size instead.
            t = time.perf_counter()
            loaded = load_image(path, max_megapixels=self.max_megapixels)
            f = loaded.decode_scale / decode_scale
            pixels, decode_scale = loaded.image, loaded.decode_scale
            face = resize_analysis(face, pixels.shape[:2])
            scale /= f
            timing["decode"] += time.perf_counter() - t
        warnings = list(face.warnings)
        if scale > 2.0:
            warnings.append(
                f"face is small ({self.spec.face_height_px / scale:.0f} px high): enlarged {scale:.1f}x, "
                "small lesions may be missed"
            )
        warnings += _exposure_warnings(pixels, face.skin)

        t = time.perf_counter()
        work, (x0, y0, x1, y1), area = working_crop(pixels, face, scale)
        timing["preprocess"] = time.perf_counter() - t

        t = time.perf_counter()
        heat, log_size = self.predictor.predict(work)
        timing["inference"] = time.perf_counter() - t

        t = time.perf_counter()
        found = decode_lesions(heat, log_size, self.thresholds, self.spec.classes, stride=self.spec.output_stride)
        lesions = []
        to_photo = 1.0 / decode_scale
        # Working pixels -> decoded-image pixels: the crop's origin plus the exact per-axis resize factor.
        fx = work.shape[1] / max(1, x1 - x0)
        fy = work.shape[0] / max(1, y1 - y0)
        for cls, xw, yw, bw, bh, score in found:
            xd, yd = x0 + xw / fx, y0 + yw / fy  # decoded-image pixels
            ix, iy = int(xd), int(yd)
            if not (0 <= iy < area.shape[0] and 0 <= ix < area.shape[1] and area[iy, ix]):
                continue
            w_ph, h_ph = bw / fx * to_photo, bh / fy * to_photo
            x_ph, y_ph = xd * to_photo, yd * to_photo
            lesions.append(
                Lesion(
                    cls=cls,
                    x=x_ph,
                    y=y_ph,
                    area_px=float(np.pi / 4 * w_ph * h_ph),
                    bbox=(x_ph - w_ph / 2, y_ph - h_ph / 2, w_ph, h_ph),
                    score=float(score),
                    region=face.region_at(xd, yd),
                )
            )
        lesions.sort(key=lambda les: (les.y, les.x))
        counts = count_by_class(lesions)
        frontal = face.found and face.view == "front" and face.box is not None
        half: int | None = None
        if frontal and face.box is not None:
            # A frontal photo shows both half faces: grade the worse half, as Hayashi grades one side.
            mid = (face.box[0] + face.box[2] / 2) * to_photo
            acne = [les for les in lesions if les.cls in ACNE_CLASSES]
            half = max(sum(les.x < mid for les in acne), sum(les.x >= mid for les in acne))
        g = grades(
            lesions,
            regions_known=frontal,
            hayashi_count=half,
            **({"hayashi_basis": "worse half of a frontal photo"} if frontal else {}),
        )
        timing["postprocess"] = time.perf_counter() - t
        timing["total"] = sum(timing.values())
        face_box = None
        if face.box is not None:
            bx, by, bw, bh = (int(round(v * to_photo)) for v in face.box)
            face_box = (bx, by, bw, bh)
        face_info = FaceInfo(
            found=face.found,
            box=face_box,
            method=face.method,
            view=face.view,
            skin_fraction=round(face.skin_fraction, 4),
            scale=round(scale * decode_scale, 5),
        )
        return CountResult(
            image=info,
            model=self.model_info,
            face=face_info,
            lesions=tuple(lesions),
            counts=counts,
            counts_by_region=count_by_region(lesions),
            grades=g,
            warnings=tuple(warnings),
            timing_s=timing,
        )


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
