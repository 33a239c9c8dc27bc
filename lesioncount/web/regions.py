"""Facial region of a point a clinician clicks, from the same face analysis the counter uses.

The analysis of a photo is kept for the last few photos corrected, so only the first added mark of a photo
pays for it (about a second on a clinic-size photo).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from lesioncount.face import FaceAnalysis, analyse_face
from lesioncount.io import read_image


class RegionFinder:
    """``region_at(path, x, y)``: the region name at a photo pixel (``other`` off the face)."""

    def __init__(self, max_photos: int = 4, max_megapixels: float = 100.0) -> None:
        self.max_photos = max_photos
        self.max_megapixels = max_megapixels
        self._cache: OrderedDict[str, FaceAnalysis] = OrderedDict()
        self._lock = threading.Lock()

    def analysis(self, path: Path) -> FaceAnalysis:
        key = str(path)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        face = analyse_face(read_image(path, max_megapixels=self.max_megapixels))
        with self._lock:
            self._cache[key] = face
            while len(self._cache) > self.max_photos:
                self._cache.popitem(last=False)
        return face

    def region_at(self, path: Path, x: float, y: float) -> str:
        return self.analysis(path).region_at(x, y)
