from __future__ import annotations

import numpy as np
import pytest

from lesioncount.face import analyse_face, counting_area, detect_face
from lesioncount.types import REGIONS


def test_astronaut_face_regions_in_anatomical_order(astronaut: np.ndarray) -> None:
    face = analyse_face(astronaut)
    assert face.found and face.view == "front" and face.method == "haar-frontal"
    x, y, w, h = face.box
    assert 140 < x + w / 2 < 300 and 40 < y + h / 2 < 200  # the face is in the upper middle of the portrait
    centre = {}
    for name in ("forehead", "nose", "chin", "left_cheek", "right_cheek"):
        ys, xs = np.nonzero(face.skin & (face.regions == REGIONS.index(name)))
        assert len(xs) > 50, name
        centre[name] = (xs.mean(), ys.mean())
    assert centre["forehead"][1] < centre["nose"][1] < centre["chin"][1]
    # The patient's left cheek is on the image's right in a frontal photo.
    assert centre["right_cheek"][0] < centre["nose"][0] < centre["left_cheek"][0]
    assert face.region_at(-5, -5) == "other"


def test_skin_excludes_background_and_eyes(astronaut: np.ndarray) -> None:
    face = analyse_face(astronaut)
    assert not face.skin[:30, :].any()  # grey studio background above the head
    x, y, w, h = face.box
    eye_band = face.skin[y + int(0.28 * h) : y + int(0.36 * h), x + int(0.25 * w) : x + int(0.4 * w)]
    assert eye_band.mean() < 0.2
    assert 0.02 < face.skin_fraction < 0.3


def test_no_face_counts_whole_frame_with_a_warning() -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    assert detect_face(noise)[0] is None
    face = analyse_face(noise)
    assert not face.found and face.skin.all() and any("no face" in w for w in face.warnings)
    assert counting_area(face).all()


def test_counting_area_grows_the_skin(astronaut: np.ndarray) -> None:
    face = analyse_face(astronaut)
    area = counting_area(face, 0.1)
    assert (area >= face.skin).all() and area.sum() > face.skin.sum()
    assert counting_area(face, 0.0).sum() == face.skin.sum()


def test_large_photo_analysed_at_reduced_size_keeps_full_size_masks(astronaut: np.ndarray) -> None:
    big = np.kron(astronaut, np.ones((3, 3, 1), np.uint8))  # 1536 px: analysed at 1024
    small_face, big_face = analyse_face(astronaut), analyse_face(big)
    assert big_face.skin.shape == big.shape[:2] and big_face.regions.shape == big.shape[:2]
    assert big_face.box is not None and small_face.box is not None
    assert abs(big_face.box[3] / 3 - small_face.box[3]) < 0.15 * small_face.box[3]
    assert abs(big_face.skin_fraction - small_face.skin_fraction) < 0.03


def test_input_checked(astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        analyse_face(astronaut.astype(np.float32))
    before = astronaut.copy()
    analyse_face(astronaut)
    np.testing.assert_array_equal(astronaut, before)
