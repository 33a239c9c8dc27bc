"""Secondary measures per visit: shine (an oiliness proxy) and redness (erythema index), on skin.

Both are photometric, so they are compared between visits only when the lighting of the two photos is
comparable (``Comparability.lighting_comparable``); otherwise they are withheld with the reason. Neither is
a calibrated instrument reading: without a colour chart and cross-polarised light they track change
within one clinic's set-up, not absolute values.

- shine: share of skin pixels that are specular highlights: linear luminance at least ``SHINE_STOPS``
  above the skin median and saturation at most half the skin median (highlights are bright and
  desaturated). Cross-polarised photos remove specular light, so shine reads near 0 on them.
- redness: mean erythema index over skin, ``EI = 100 * log10(R / G)`` on linear light (after Dawson et al.
  1980 and Diffey et al. 1984, who used reflectance at red and green wavelengths).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lesioncount.compare.comparability import Comparability, srgb_to_linear

#: A highlight is at least this many stops brighter than the skin median.
SHINE_STOPS = 1.0
#: Fewer skin pixels than this and no measure is given.
MIN_SKIN_PX = 200
#: Caveat shown beside every secondary measure.
CAVEAT = (
    "shine and redness are photo measures, not instrument readings: they compare visits taken under the same "
    "lighting; cross-polarised photos show no shine"
)


@dataclass(frozen=True)
class SkinMeasures:
    """Shine and redness of one photo's skin.

    Attributes:
        shine_fraction: share of skin pixels that are specular highlights, in [0, 1].
        erythema_index: mean ``100 * log10(R/G)`` over skin (linear light); higher = redder.
        skin_px: skin pixels measured.
    """

    shine_fraction: float
    erythema_index: float
    skin_px: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "shine_fraction": round(self.shine_fraction, 5),
            "erythema_index": round(self.erythema_index, 3),
            "skin_px": self.skin_px,
        }


def skin_measures(image: npt.NDArray[np.uint8], skin_mask: npt.NDArray[np.bool_]) -> SkinMeasures | None:
    """Shine and redness of the skin in one photo.

    Args:
        image: HxWx3 uint8 RGB.
        skin_mask: HxW bool skin.

    Returns:
        The measures, or None when fewer than ``MIN_SKIN_PX`` skin pixels are given.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8 RGB, got {image.shape} {image.dtype}")
    if skin_mask.shape != image.shape[:2]:
        raise ValueError(f"skin_mask shape {skin_mask.shape} does not match the image's {image.shape[:2]}")
    n = int(skin_mask.sum())
    if n < MIN_SKIN_PX:
        return None
    lin = srgb_to_linear(image)[skin_mask]
    lum = 0.2126 * lin[:, 0] + 0.7152 * lin[:, 1] + 0.0722 * lin[:, 2]
    sat = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 1][skin_mask].astype(np.float32) / 255.0
    highlight = (lum >= np.median(lum) * 2.0**SHINE_STOPS) & (sat <= 0.5 * np.median(sat))
    ei = 100.0 * np.log10((lin[:, 0] + 1e-4) / (lin[:, 1] + 1e-4))
    return SkinMeasures(shine_fraction=float(highlight.mean()), erythema_index=float(ei.mean()), skin_px=n)


def compare_measures(
    base: SkinMeasures | None, follow: SkinMeasures | None, comparability: Comparability
) -> dict[str, Any]:
    """Per-visit values and their change, or the reason they are withheld.

    Returns:
        ``{"shown": bool, "reason": str | None, "caveat": str, "baseline": {...} | None,
        "followup": {...} | None, "shine_change": float | None, "erythema_change": float | None}``.
    """
    out: dict[str, Any] = {"shown": False, "reason": None, "caveat": CAVEAT, "baseline": None, "followup": None}
    out |= {"shine_change": None, "erythema_change": None}
    if base is None or follow is None:
        out["reason"] = "too little skin found to measure"
        return out
    if not comparability.lighting_comparable:
        out["reason"] = (
            f"lighting differs (exposure {comparability.exposure_stops:+.1f} stops, colour balance shift "
            f"{float(np.hypot(*comparability.wb_shift_log2)):.2f}): shine and redness are not compared"
        )
        return out
    out |= {
        "shown": True,
        "baseline": base.to_dict(),
        "followup": follow.to_dict(),
        "shine_change": round(follow.shine_fraction - base.shine_fraction, 5),
        "erythema_change": round(follow.erythema_index - base.erythema_index, 3),
    }
    return out
