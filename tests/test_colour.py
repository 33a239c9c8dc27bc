"""The same photo stored in another colour space reaches the model as the same pixels (issue 12, item 14).

The wide-gamut profile is built here, byte by byte (an ICC v2 matrix/TRC profile with Adobe RGB (1998)'s
D50-adapted primaries and a 2.2 gamma), so no profile file is committed or downloaded.
"""

from __future__ import annotations

import struct
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from lesioncount.io import load_image

D50 = (0.9642, 1.0, 0.8249)
ADOBE_RGB_D50 = ((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446))


def _s15f16(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz_tag(xyz: tuple[float, float, float]) -> bytes:
    return b"XYZ " + bytes(4) + b"".join(_s15f16(v) for v in xyz)


def _desc_tag(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    return b"desc" + bytes(4) + struct.pack(">I", len(ascii_)) + ascii_ + bytes(4 + 4 + 2 + 1 + 67)


def _pad4(b: bytes) -> bytes:
    return b + bytes(-len(b) % 4)


def wide_gamut_profile(name: str = "Test wide gamut (Adobe RGB primaries)") -> bytes:
    """An ICC v2 display profile: Adobe RGB (1998) primaries, gamma 2.2."""
    gamma = b"curv" + bytes(4) + struct.pack(">IH", 1, round(2.2 * 256))
    tags = [
        (b"desc", _desc_tag(name)),
        (b"cprt", b"text" + bytes(4) + b"public domain\0"),
        (b"wtpt", _xyz_tag(D50)),
        (b"rXYZ", _xyz_tag(ADOBE_RGB_D50[0])),
        (b"gXYZ", _xyz_tag(ADOBE_RGB_D50[1])),
        (b"bXYZ", _xyz_tag(ADOBE_RGB_D50[2])),
        (b"rTRC", gamma),
        (b"gTRC", gamma),
        (b"bTRC", gamma),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = [], b""
    for sig, data in tags:
        table.append(sig + struct.pack(">II", offset + len(body), len(data)))
        body += _pad4(data)
    size = offset + len(body)
    header = (
        struct.pack(">I", size)
        + b"lcms"
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(24)
        + struct.pack(">I", 0)  # perceptual
        + b"".join(_s15f16(v) for v in D50)
        + bytes(48)
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + b"".join(table) + body


def _in_profile(rgb: np.ndarray, icc: bytes) -> np.ndarray:
    """sRGB pixels re-expressed in the profile's colour space (what a camera set to it would store)."""
    dst = ImageCms.ImageCmsProfile(BytesIO(icc))
    t = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), dst, "RGB", "RGB")
    return np.asarray(ImageCms.applyTransform(Image.fromarray(rgb), t))


@pytest.fixture(scope="module")
def face(astronaut: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(astronaut[:384, 64:448])


def test_the_built_profile_is_a_valid_wide_gamut_profile() -> None:
    prof = ImageCms.ImageCmsProfile(BytesIO(wide_gamut_profile()))
    assert "wide gamut" in ImageCms.getProfileDescription(prof)
    # Saturated sRGB red sits well inside Adobe RGB's gamut: its red value there is much lower.
    red = _in_profile(np.full((2, 2, 3), (220, 30, 30), np.uint8), wide_gamut_profile())[0, 0]
    assert red[0] < 205


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "JPEG"])
def test_a_wide_gamut_photo_is_converted_to_srgb(tmp_path: Path, face: np.ndarray, fmt: str) -> None:
    icc = wide_gamut_profile()
    stored = _in_profile(face, icc)
    kw = {"quality": 95} if fmt == "JPEG" else {}
    tagged, untagged, srgb = (tmp_path / f"{n}.{fmt.lower()}" for n in ("tagged", "untagged", "srgb"))
    Image.fromarray(stored).save(tagged, fmt, icc_profile=icc, **kw)
    Image.fromarray(stored).save(untagged, fmt, **kw)
    Image.fromarray(face).save(srgb, fmt, **kw)
    ref = load_image(srgb).image.astype(int)
    managed = load_image(tagged).image.astype(int)
    ignored = load_image(untagged).image.astype(int)
    # Read through its profile, the photo matches the sRGB original to rounding (and to the two JPEG
    # encodings' own differences); read without it, it would be visibly duller (what this guards against).
    assert np.abs(managed - ref).mean() < (2.0 if fmt == "JPEG" else 1.0)
    assert np.abs(ignored - ref).mean() > 3 * np.abs(managed - ref).mean()
    assert load_image(tagged).notes == ()


def test_an_srgb_profile_changes_nothing(tmp_path: Path, face: np.ndarray) -> None:
    srgb_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(face).save(tmp_path / "a.png", icc_profile=srgb_icc)
    Image.fromarray(face).save(tmp_path / "b.png")
    assert np.array_equal(load_image(tmp_path / "a.png").image, load_image(tmp_path / "b.png").image)


def test_a_broken_profile_is_noted_and_ignored(tmp_path: Path, face: np.ndarray) -> None:
    Image.fromarray(face).save(tmp_path / "a.png", icc_profile=b"not a profile at all" * 8)
    loaded = load_image(tmp_path / "a.png")
    assert np.array_equal(loaded.image, face)
    assert any("colour profile could not be read" in n for n in loaded.notes)


def test_a_reduced_jpeg_decode_is_colour_managed_too(tmp_path: Path, astronaut: np.ndarray) -> None:
    icc = wide_gamut_profile()
    big = np.ascontiguousarray(np.repeat(np.repeat(astronaut, 2, axis=0), 2, axis=1))
    Image.fromarray(_in_profile(big, icc)).save(tmp_path / "t.jpg", quality=95, icc_profile=icc)
    Image.fromarray(big).save(tmp_path / "s.jpg", quality=95)
    t = load_image(tmp_path / "t.jpg", min_short_side_px=400)
    s = load_image(tmp_path / "s.jpg", min_short_side_px=400)
    assert t.decode_scale == s.decode_scale == 0.5
    assert np.abs(t.image.astype(int) - s.image.astype(int)).mean() < 2.0


def test_cmyk_without_a_profile_is_converted_and_noted(tmp_path: Path, face: np.ndarray) -> None:
    Image.fromarray(face).convert("CMYK").save(tmp_path / "c.tif")
    loaded = load_image(tmp_path / "c.tif")
    # Pillow's RGB -> CMYK has no black; its CMYK -> RGB is then the exact inverse.
    assert np.array_equal(loaded.image, face)
    assert any("CMYK TIFF has no colour profile" in n for n in loaded.notes)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_rotated_pixels_with_their_exif_tag_count_as_the_upright_photo(
    tmp_path: Path, astronaut: np.ndarray, counter, orientation: int
) -> None:
    """Stored rotated with the orientation that undoes it (as cameras do): the same pixels, the same count."""
    undo = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(astronaut).transpose(undo[orientation]).save(tmp_path / "r.png", exif=exif)
    Image.fromarray(astronaut).save(tmp_path / "u.png")
    assert np.array_equal(load_image(tmp_path / "r.png").image, astronaut)
    a, b = counter.count(tmp_path / "r.png"), counter.count(tmp_path / "u.png")
    assert a.counts == b.counts
    assert [(les.x, les.y) for les in a.lesions] == [(les.x, les.y) for les in b.lesions]
