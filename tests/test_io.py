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


def _smooth(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like (smooth, compressible) colour image."""
    rng = np.random.default_rng(seed)
    base = np.cumsum(rng.normal(0, 3, (h, w, 3)), axis=1) + np.linspace(60, 190, h)[:, None, None]
    return np.clip(base, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("ext", [".jpg", ".tif"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(tmp_path: Path, ext: str, orientation: int) -> None:
    """The JPEG fast path rotates as Pillow does; a TIFF's orientation is applied exactly once."""
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / f"o{ext}"
    Image.fromarray(_smooth(100, 200)).save(p, exif=exif)
    loaded = load_image(p)
    with Image.open(p) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert loaded.image.shape == expected.shape
    assert (loaded.height, loaded.width) == expected.shape[:2] and loaded.decode_scale == 1.0
    assert np.abs(loaded.image.astype(int) - expected).max() <= 1


def test_reduced_decode_takes_the_size_it_needs(tmp_path: Path) -> None:
    Image.fromarray(_smooth(1600, 1200)).save(tmp_path / "a.jpg")
    assert load_image(tmp_path / "a.jpg", min_short_side_px=100).decode_scale == 1 / 8
    assert load_image(tmp_path / "a.jpg", min_short_side_px=100, min_decode_scale=0.3).decode_scale == 1 / 2
    assert load_image(tmp_path / "a.jpg", min_short_side_px=100, min_decode_scale=0.25).decode_scale == 1 / 4


def test_garbage_in_jpeg_scan_data_is_flagged_damaged(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(_smooth(600, 800)).save(buf, format="JPEG", quality=90)
    data = bytearray(buf.getvalue())
    clean = load_image(_write(tmp_path / "clean.jpg", bytes(data)))
    assert clean.damaged is None and clean.gradable
    mid = len(data) // 2
    data[mid : mid + 1500] = np.random.default_rng(1).integers(0, 256, 1500, dtype=np.uint8).tobytes()
    hurt = load_image(_write(tmp_path / "hurt.jpg", bytes(data)))
    assert hurt.damaged is not None and "corrupt" in hurt.damaged.lower()
    assert not hurt.gradable and hurt.image.shape == clean.image.shape


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_grayscale_photos_are_flagged(tmp_path: Path) -> None:
    rgb = _smooth(200, 300)
    Image.fromarray(rgb).convert("L").save(tmp_path / "g.jpg")
    Image.fromarray(np.repeat(rgb[:, :, :1], 3, axis=2)).save(tmp_path / "g3.png")  # grey stored as RGB
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert load_image(tmp_path / "g.jpg").grayscale
    assert load_image(tmp_path / "g3.png").grayscale
    colour = load_image(tmp_path / "c.png")
    assert not colour.grayscale and colour.gradable


def test_float_tiff_in_unit_range_is_not_black(tmp_path: Path) -> None:
    f = np.linspace(0.0, 1.0, 200 * 100, dtype=np.float32).reshape(100, 200)
    Image.fromarray(f, mode="F").save(tmp_path / "f.tif")
    out = load_image(tmp_path / "f.tif").image
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255 and abs(int(out[50, 100, 0]) - 128) <= 2


def test_multi_frame_files_say_only_the_first_was_counted(tmp_path: Path) -> None:
    frames = [Image.fromarray(_smooth(100, 150, seed)) for seed in range(3)]
    frames[0].save(tmp_path / "m.tif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "m.webp", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(tmp_path / "m.mpo", save_all=True, append_images=frames[1:2])
    frames[0].save(tmp_path / "one.tif")
    notes = {name: load_image(tmp_path / name).notes for name in ("m.tif", "m.webp", "m.mpo", "one.tif")}
    assert "multi-page TIFF with 3 images" in notes["m.tif"][0]
    assert "animated WEBP with 3 images" in notes["m.webp"][0]
    assert "multi-picture (MPO) file with 2 images" in notes["m.mpo"][0]
    assert notes["one.tif"] == ()


def test_strips_are_refused_before_decoding(tmp_path: Path) -> None:
    Image.new("RGB", (16000, 64), (200, 150, 130)).save(tmp_path / "strip.png")
    with pytest.raises(ImageReadError, match="a strip"):
        load_image(tmp_path / "strip.png")


def test_messages_name_the_path_once_and_escape_it(tmp_path: Path) -> None:
    bad = tmp_path / "two\nlines.jpg"
    bad.write_text("not a photo")
    with pytest.raises(ImageReadError) as e:
        load_image(bad)
    msg = str(e.value)
    assert "\n" not in msg and "two\\nlines.jpg" in msg and msg.count("lines.jpg") == 1
    assert e.value.reason == "not a readable image (unknown or unsupported format)"


def test_bad_png_crc_is_called_a_corrupt_png(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[29] ^= 0xFF  # a byte of the IHDR chunk's CRC
    with pytest.raises(ImageReadError, match="corrupt PNG file"):
        load_image(_write(tmp_path / "crc.png", bytes(data)))


def test_cap_message_and_pillow_warning(tmp_path: Path) -> None:
    from lesioncount.io import _format_megapixels

    assert _format_megapixels(100.02, 100) == "100.02" and _format_megapixels(120.4, 100) == "120"
    # Pillow warns on opening anything over 89 MP; that warning must not leak (warnings are errors here).
    Image.new("1", (10000, 9000)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="over the cap of 50"):
        load_image(tmp_path / "big.png", max_megapixels=50)


def test_scan_reports_what_it_skips(tmp_path: Path) -> None:
    from lesioncount.io import scan_inputs

    root = tmp_path / "in"
    (root / "a").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    for rel in ("a/1.jpg", "b.png", "c.gif", "notes.txt", ".hidden.jpg", "b.png.overlay.jpg", "x.MPO"):
        (root / rel).write_bytes(b"x")
    (root / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (root / "out").mkdir()
    (root / "out" / "old.jpg").write_bytes(b"x")
    found = scan_inputs([root], exclude=[root / "out"])
    assert found.names == ["b.png", "x.MPO", "a/1.jpg"]
    reasons = {p.name: why for p, why in found.skipped}
    assert reasons["c.gif"] == "unsupported format (.gif)"
    assert reasons["notes.txt"] == "not a photo (.txt)"
    assert reasons[".hidden.jpg"] == "hidden file"
    assert reasons["b.png.overlay.jpg"] == "an output of lesioncount"
    assert "not followed" in reasons["link"]
    assert "old.jpg" not in reasons
    # A symlink loop given explicitly is kept, so that reading it reports the loop.
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert scan_inputs([tmp_path / "loop"]).photos == [tmp_path / "loop"]
    with pytest.raises(ImageReadError, match="link loop"):
        load_image(tmp_path / "loop")


def test_atomic_writes_have_the_default_mode_and_short_temp_names(tmp_path: Path) -> None:
    import os

    from lesioncount.io import remove_stale_temps, write_text

    long_name = "x" * 245 + ".json"
    write_json(tmp_path / long_name, {"a": 1})
    write_text(tmp_path / "s.csv", "a\n")
    (tmp_path / "plain").write_text("made by open()")
    mode = lambda p: os.stat(p).st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / long_name) == mode(tmp_path / "s.csv") == mode(tmp_path / "plain")
    (tmp_path / ".lc-dead.tmp").write_text("left by a killed run")
    assert remove_stale_temps(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([long_name, "s.csv", "plain"])


def test_unreadable_subfolder_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from lesioncount.io import scan_inputs

    (tmp_path / "ok").mkdir()
    (tmp_path / "locked").mkdir()
    (tmp_path / "ok" / "a.jpg").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:  # root reads every folder, so deny one by hand
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    found = scan_inputs([tmp_path])
    assert found.names == ["ok/a.jpg"]
    assert [(p.name, why) for p, why in found.skipped] == [("locked", "folder cannot be read (Permission denied)")]
