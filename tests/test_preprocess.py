from __future__ import annotations

import numpy as np
import pytest

from lesioncount.preprocess import crop_box, pad_to_multiple, plan_tiles, resize, working_scale


@pytest.mark.parametrize(("h", "w"), [(16, 16), (512, 512), (528, 1040), (1280, 960), (2000, 1504)])
def test_tiles_keep_every_pixel_exactly_once(h: int, w: int) -> None:
    seen = np.zeros((h, w), np.int32)
    for t in plan_tiles(h, w, 512, 64):
        assert t.y1 - t.y0 <= 512 and t.x1 - t.x0 <= 512
        assert all(v % 8 == 0 for v in (t.keep_y0, t.keep_x0, t.keep_y1, t.keep_x1))
        seen[t.y0 + t.keep_y0 : t.y0 + t.keep_y1, t.x0 + t.keep_x0 : t.x0 + t.keep_x1] += 1
    assert (seen == 1).all()


def test_bad_tiles_rejected() -> None:
    with pytest.raises(ValueError, match="multiples"):
        plan_tiles(64, 64, 100, 10)


def test_working_scale_face_and_fallback() -> None:
    assert working_scale(1000, (3000, 4000), 500) == 0.5
    assert working_scale(None, (640, 640), 500) == pytest.approx(1.25 * 500 / 640)


def test_pad_and_resize_have_inverses() -> None:
    img = np.arange(99 * 101 * 3, dtype=np.uint32).reshape(99, 101, 3).astype(np.uint8)
    p = pad_to_multiple(img)
    assert p.shape == (112, 112, 3)
    np.testing.assert_array_equal(p[:99, :101], img)
    assert resize(img, 1.0) is img
    assert resize(img, 0.5).shape == (50, 50, 3)


def test_crop_box() -> None:
    m = np.zeros((50, 60), bool)
    assert crop_box(m, 5) == (0, 0, 60, 50)
    m[10:20, 30:35] = True
    assert crop_box(m, 5) == (25, 5, 40, 25)
