"""Face-stage figures on labelled photos: face found, views, labelled lesions by region, re-take stability.

``face_figures`` takes VOC-labelled photos (ACNE04 layout) and returns the figures the face issue asks
for; ``scripts/check_face.py`` prints them for a folder.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from lesioncount.data import read_voc_file
from lesioncount.evaluate.retake import retake
from lesioncount.face import FaceAnalysis, analyse_face, counting_area
from lesioncount.types import REGIONS


@dataclass
class FaceFigures:
    """Counts behind the face-stage figures (shares are properties)."""

    n_photos: int = 0
    n_found: int = 0
    views: collections.Counter[str] = field(default_factory=collections.Counter)
    regions: collections.Counter[str] = field(default_factory=collections.Counter)
    n_lesions: int = 0
    n_off_area: int = 0
    found_flips: int = 0
    view_flips: int = 0
    height_change: list[float] = field(default_factory=list)

    @property
    def found_share(self) -> float:
        return self.n_found / max(1, self.n_photos)

    @property
    def lateral_share(self) -> float:
        return (self.views["left"] + self.views["right"]) / max(1, self.n_photos)

    def region_share(self, region: str) -> float:
        return self.regions[region] / max(1, self.n_lesions)

    @property
    def off_area_share(self) -> float:
        return self.n_off_area / max(1, self.n_lesions)


def face_figures(
    xml_paths: Iterable[Path],
    rng: np.random.Generator | int | None = None,
    *,
    on_face: Callable[[int, npt.NDArray[np.uint8], FaceAnalysis, object], None] | None = None,
) -> FaceFigures:
    """Analyse each labelled photo and one simulated re-take of it.

    Args:
        xml_paths: Pascal VOC files with their JPEG beside them.
        rng: seeds the re-takes.
        on_face: called as ``on_face(i, image, face, annotation)`` (overlays, progress).
    """
    rng = np.random.default_rng(rng)
    figs = FaceFigures()
    for i, xml in enumerate(xml_paths):
        ann = read_voc_file(xml)
        bgr = cv2.imread(str(xml.with_name(ann.file_name)))
        if bgr is None:
            continue
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        face = analyse_face(image)
        figs.n_photos += 1
        figs.n_found += face.found
        figs.views[face.view] += 1
        area = counting_area(face)
        for les in ann.lesions:
            figs.n_lesions += 1
            figs.regions[face.region_at(les.x, les.y)] += 1
            ix, iy = int(les.x), int(les.y)
            figs.n_off_area += not (0 <= iy < area.shape[0] and 0 <= ix < area.shape[1] and area[iy, ix])
        again = retake(image, rng)
        face2 = analyse_face(again.image)
        figs.found_flips += face.found != face2.found
        figs.view_flips += face.view != face2.view
        if face.height_px and face2.height_px:
            figs.height_change.append(face2.height_px / (face.height_px * again.zoom) - 1)
        if on_face is not None:
            on_face(i, image, face, ann)
    return figs


def region_overlay(image: npt.NDArray[np.uint8], face: FaceAnalysis) -> npt.NDArray[np.uint8]:
    """The photo with its skin tinted by region (forehead red, cheeks green/blue, nose yellow, chin magenta)."""
    colours = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (128, 128, 128)], np.uint8)
    assert len(colours) == len(REGIONS)
    vis = image.copy()
    tint = colours[face.regions][face.skin]
    vis[face.skin] = (0.55 * vis[face.skin] + 0.45 * tint).astype(np.uint8)
    return vis
