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


def test_counting_frame_round_trip_is_exact() -> None:
    from lesioncount.preprocess import CountingFrame, counting_frame

    area = np.zeros((300, 401), bool)
    area[40:210, 77:333] = True
    for scale, decode in ((0.37, 1.0), (1.9, 0.5), (1.0, 0.25)):
        frame = counting_frame(area, scale, margin_work_px=24, decode_scale=decode)
        assert isinstance(frame, CountingFrame)
        assert frame.x0 <= 77 and frame.y0 <= 40 and frame.x1 >= 333 and frame.y1 >= 210
        pts = np.array([[0.0, 0.0], [12.5, 7.25], [frame.work_hw[1] - 1.0, frame.work_hw[0] - 1.0]])
        back = frame.photo_to_work(frame.work_to_photo(pts))
        np.testing.assert_allclose(back, pts, atol=1e-9)
        photo = np.array([[100.0, 100.0], [333.3, 44.4]]) / decode
        np.testing.assert_allclose(frame.work_to_photo(frame.photo_to_work(photo)), photo, atol=1e-9)
        # The frame's origin is the crop's corner, and the far corner maps to the crop's far corner.
        np.testing.assert_allclose(frame.work_to_decoded([[0, 0]]), [[frame.x0, frame.y0]])
        np.testing.assert_allclose(frame.work_to_decoded([frame.work_hw[::-1]]), [[frame.x1, frame.y1]])
        assert abs(frame.scale - scale * decode) < 0.02 * scale * decode


def test_counting_frame_apply_gives_the_working_image() -> None:
    from lesioncount.preprocess import counting_frame

    img = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    area = np.zeros((120, 160), bool)
    area[30:90, 40:120] = True
    frame = counting_frame(area, 2.0, margin_work_px=8)
    work = frame.apply(img)
    assert work.shape[:2] == frame.work_hw
    # A pixel of the crop lands where the frame says it does.
    same = counting_frame(area, 1.0, margin_work_px=8)
    np.testing.assert_array_equal(same.apply(img), img[same.y0 : same.y1, same.x0 : same.x1])
