from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lesioncount.io import ImageReadError, find_images, load_image, read_image, write_json


def _photo(h: int = 120, w: int = 160) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".tif", ".webp", ".bmp"])
def test_formats_decode_to_rgb8(tmp_path: Path, ext: str) -> None:
    img = _photo()
    p = tmp_path / f"a{ext}"
    Image.fromarray(img).save(p, **({"lossless": True} if ext == ".webp" else {}))
    out = read_image(p)
    assert out.shape == (120, 160, 3) and out.dtype == np.uint8
    if ext != ".jpg":
        np.testing.assert_array_equal(out, img)


def test_heic_roundtrip(tmp_path: Path) -> None:
    pytest.importorskip("pillow_heif")
    p = tmp_path / "a.heic"
    Image.fromarray(_photo()).save(p)
    assert read_image(p).shape == (120, 160, 3)


def test_grayscale_16bit_and_alpha(tmp_path: Path) -> None:
    g16 = (np.arange(100 * 80, dtype=np.uint32).reshape(80, 100) * 8).astype(np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(g16).save(p)
    out = read_image(p)
    assert out.shape == (80, 100, 3)
    assert out[-1, -1, 0] == round(g16[-1, -1] / 65535 * 255)
    rgba = np.zeros((70, 90, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :45, 3] = 255  # left opaque red, right fully transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert tuple(out[0, 0]) == (200, 0, 0) and tuple(out[0, -1]) == (255, 255, 255)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_applied(tmp_path: Path, orientation: int) -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[:10, :10] = 255  # a white corner, top-left as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / "o.png"
    Image.fromarray(img).save(p, exif=exif)
    loaded = load_image(p)
    expected = {3: (100, 200), 6: (200, 100), 8: (200, 100)}[orientation]
    assert loaded.image.shape[:2] == expected
    assert (loaded.height, loaded.width) == expected
    corner = {3: (-5, -5), 6: (5, -5), 8: (-5, 5)}[orientation]
    assert loaded.image[corner[0], corner[1], 0] == 255


def test_bad_inputs_give_one_line_errors(tmp_path: Path) -> None:
    cases = {}
    (tmp_path / "empty.jpg").write_bytes(b"")
    cases["empty.jpg"] = "empty file"
    (tmp_path / "text.jpg").write_text("hello, not a photo")
    cases["text.jpg"] = "not a readable image"
    buf = io.BytesIO()
    Image.fromarray(_photo(400, 400)).save(buf, format="JPEG")
    (tmp_path / "trunc.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    cases["trunc.jpg"] = "truncated"
    Image.fromarray(_photo(20, 30)).save(tmp_path / "tiny.png")
    cases["tiny.png"] = "too small"
    cases["missing.jpg"] = "no such file"
    for name, words in cases.items():
        with pytest.raises(ImageReadError) as e:
            load_image(tmp_path / name)
        assert words in str(e.value) and "\n" not in str(e.value), name


def test_truncated_photo_fails_even_after_a_library_relaxed_pillow(tmp_path: Path) -> None:
    from PIL import ImageFile

    buf = io.BytesIO()
    Image.fromarray(_photo(400, 400)).save(buf, format="JPEG")
    (tmp_path / "trunc.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # what importing weasyprint does
    try:
        with pytest.raises(ImageReadError, match="truncated"):
            load_image(tmp_path / "trunc.jpg")
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_megapixel_cap_and_bomb(tmp_path: Path) -> None:
    Image.new("RGB", (3000, 2000)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="over the cap"):
        load_image(tmp_path / "big.png", max_megapixels=5)
    assert load_image(tmp_path / "big.png", max_megapixels=7).width == 3000
    # A bomb: a tiny file that claims a vast canvas.
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 200_000
    with pytest.raises(ImageReadError, match="decompression bomb"):
        load_image(tmp_path / "bomb.png", max_megapixels=1000)


def test_draft_decoding_keeps_full_size_metadata(tmp_path: Path) -> None:
    Image.fromarray(_photo(1200, 1600)).save(tmp_path / "a.jpg")
    full = load_image(tmp_path / "a.jpg")
    small = load_image(tmp_path / "a.jpg", min_short_side_px=500)
    assert (small.width, small.height) == (full.width, full.height) == (1600, 1200)
    assert small.decode_scale == 0.5 and small.image.shape[:2] == (600, 800)
    assert small.sha256 == full.sha256


def test_find_images_recurses_and_keeps_explicit_files(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ("a/1.jpg", "a/b/2.PNG", "a/notes.txt"):
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "odd.dat").write_bytes(b"x")
    found = find_images([tmp_path / "a", tmp_path / "odd.dat", tmp_path / "a" / "1.jpg"])
    assert [p.name for p in found] == ["1.jpg", "2.PNG", "odd.dat"]


def test_write_json_is_atomic_and_leaves_no_temp(tmp_path: Path) -> None:
    write_json(tmp_path / "x.json", {"a": 1})
    with pytest.raises(TypeError):
        write_json(tmp_path / "x.json", {"a": object()})
    assert (tmp_path / "x.json").read_text().strip().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]
