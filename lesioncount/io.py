"""Read any photo into an HxWx3 uint8 RGB array as a viewer shows it; write JSON atomically.

Pillow decodes (with pillow-heif registered for HEIC), EXIF orientation is applied, 16-bit, grayscale,
palette and alpha images are reduced to 8-bit RGB. Every failure is an ``ImageReadError`` whose
message says what is wrong with the file in one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

try:  # HEIC support is optional at run time: the core works without it.
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIC_SUPPORTED = True
except ImportError:  # pragma: no cover - depends on the install
    HEIC_SUPPORTED = False

#: File extensions searched for when a folder is given.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".heic", ".heif"})
#: Default cap on decoded size; a decompression bomb or a giant scan fails fast with a clear message.
DEFAULT_MAX_MEGAPIXELS = 100.0
#: Photos smaller than this on either side cannot show countable lesions.
MIN_SIDE_PX = 64


class ImageReadError(ValueError):
    """A photo could not be read; the message is one line that names the problem."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded photo.

    Attributes:
        image: HxWx3 uint8 RGB, possibly decoded at reduced size (see ``decode_scale``).
        width: full width in pixels after EXIF orientation.
        height: full height in pixels after EXIF orientation.
        decode_scale: ``image`` pixels per full-photo pixel (1.0, or 1/2, 1/4, 1/8 for JPEG draft decoding).
        sha256: hex digest of the file bytes.
    """

    image: npt.NDArray[np.uint8]
    width: int
    height: int
    decode_scale: float
    sha256: str


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _to_rgb8(im: Image.Image) -> npt.NDArray[np.uint8]:
    """Any Pillow mode -> HxWx3 uint8 RGB; alpha is composited on white, 16-bit rescaled."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if (im.mode.startswith("I;16") or a.max() > 255) else 255.0
        g = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def load_image(
    path: str | os.PathLike[str],
    *,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    min_short_side_px: int | None = None,
) -> LoadedImage:
    """Read a photo as a viewer shows it.

    Args:
        path: JPEG, PNG, TIFF, WebP, BMP or HEIC file.
        max_megapixels: refuse larger photos (decompression bombs, giant scans).
        min_short_side_px: when given, a JPEG may be decoded at 1/2, 1/4 or 1/8 size (much faster) as long
            as its shorter side stays at least this long. None decodes at full size.

    Returns:
        The decoded photo; ``decode_scale`` relates its pixels to the full photo's.

    Raises:
        ImageReadError: the file is missing, empty, not an image, truncated, too small or too large.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise ImageReadError(f"{p}: empty file")
    digest = sha256_file(p)
    # Some libraries (weasyprint, on import) switch Pillow to silently padding truncated files with grey;
    # a truncated photo must be an error here, so insist on strict decoding for every read.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings(), Image.open(p) as im:
            # Our own megapixel cap below replaces Pillow's warning; its hard error (over twice its
            # limit) still stops a decompression bomb before any pixel is decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            w0, h0 = im.size
            if w0 * h0 > max_megapixels * 1e6:
                raise ImageReadError(
                    f"{p}: {w0}x{h0} is {w0 * h0 / 1e6:.0f} megapixels, over the cap of {max_megapixels:g} "
                    "(raise --max-megapixels if the photo is genuine)"
                )
            orientation = im.getexif().get(0x0112, 1)
            swapped = orientation in (5, 6, 7, 8)
            full_w, full_h = (h0, w0) if swapped else (w0, h0)
            if min(full_w, full_h) < MIN_SIDE_PX:
                raise ImageReadError(f"{p}: {full_w}x{full_h} is too small (need at least {MIN_SIDE_PX} px a side)")
            if min_short_side_px is not None and im.format == "JPEG":
                short = min(w0, h0)
                factor = 1
                while factor < 8 and short // (factor * 2) >= min_short_side_px:
                    factor *= 2
                if factor > 1:
                    im.draft("RGB", (w0 // factor, h0 // factor))
            im.load()
            image = _to_rgb8(ImageOps.exif_transpose(im))
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageReadError(
            f"{p}: decompression bomb: the file claims a canvas of over "
            f"{2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} megapixels ({e.__class__.__name__})"
        ) from e
    except UnidentifiedImageError as e:
        raise ImageReadError(f"{p}: not a readable image (unknown or unsupported format)") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageReadError(
            f"{p}: corrupt or truncated image ({str(e).splitlines()[0] if str(e) else e.__class__.__name__})"
        ) from e
    scale = image.shape[1] / full_w
    return LoadedImage(image=image, width=full_w, height=full_h, decode_scale=scale, sha256=digest)


def read_image(
    path: str | os.PathLike[str], *, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
) -> npt.NDArray[np.uint8]:
    """Read a photo at full size as HxWx3 uint8 RGB (EXIF orientation applied)."""
    return load_image(path, max_megapixels=max_megapixels).image


def write_image(path: str | os.PathLike[str], image: npt.NDArray[np.uint8], *, quality: int = 90) -> None:
    """Write an HxWx3 uint8 RGB array (JPEG/PNG by extension), atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=p.suffix)
    os.close(fd)
    try:
        if p.suffix.lower() in (".jpg", ".jpeg"):
            Image.fromarray(image).save(tmp, quality=quality)
        else:
            Image.fromarray(image).save(tmp)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON atomically: a crash never leaves a half-written file behind."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def find_images(paths: list[str | os.PathLike[str]]) -> list[Path]:
    """Expand photos and folders (searched recursively) into a sorted, de-duplicated list of files.

    Files given explicitly are kept whatever their extension (so a bad file is reported, not ignored);
    inside folders only known image extensions are taken.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        found = (
            sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS)
            if p.is_dir()
            else [p]
        )
        for q in found:
            key = q.resolve()
            if key not in seen:
                seen.add(key)
                out.append(q)
    return out
