"""Content-addressed photo store: originals kept byte for byte, metadata-free copies for the browser.

Layout under ``root``::

    originals/ab/abcdef...      the uploaded bytes, named by their SHA-256 (never by the client's file name)
    display/ab/abcdef....jpg    EXIF-free, orientation-applied JPEG the browser is shown
    tmp/                        uploads in flight; a file only leaves it, by an atomic rename, once checked

Uploads are judged by their content (Pillow must decode them), never by their extension or content type.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from lesioncount.io import HEIC_SUPPORTED, MIN_SIDE_PX, allow_canvas, atomic_path, read_image, strict_decoding

#: Formats accepted (Pillow's names); HEIF only when pillow-heif is installed.
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "TIFF", "WEBP", "BMP"} | ({"HEIF"} if HEIC_SUPPORTED else set()))
_CHUNK = 1 << 20
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class UploadError(ValueError):
    """An upload was refused; the message tells the user what to do."""


@dataclass(frozen=True)
class StagedPhoto:
    """A checked upload waiting in ``tmp/`` to be committed to the store."""

    tmp_path: Path
    sha256: str
    size_bytes: int
    image_format: str
    width: int
    height: int
    original_name: str


def safe_display_name(name: str | None) -> str:
    """The client's file name reduced to a harmless label: no folders, no control characters, 120 chars."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[\x00-\x1f\x7f<>\"'`]", "", base).strip().lstrip(".")
    return base[:120] or "photo"


class PhotoStore:
    """The store rooted at ``root``; safe to share between threads."""

    def __init__(self, root: Path, *, max_bytes: int, max_megapixels: float) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.max_megapixels = max_megapixels
        for sub in ("originals", "display", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def original_path(self, sha256: str) -> Path:
        if not _SHA_RE.match(sha256):  # the path comes from our own database, but never trust it blindly
            raise ValueError(f"not a SHA-256 digest: {sha256!r}")
        return self.root / "originals" / sha256[:2] / sha256

    def display_path(self, sha256: str) -> Path:
        return self.original_path(sha256).parent.parent.parent / "display" / sha256[:2] / f"{sha256}.jpg"

    def stage(self, stream: BinaryIO, original_name: str | None) -> StagedPhoto:
        """Copy an upload into ``tmp/`` with the size cap, then check by content that it is a usable photo.

        Raises:
            UploadError: too large, empty, not an image, an unaccepted format, too small or too many pixels.
                Nothing is left behind when it is raised.
        """
        name = safe_display_name(original_name)
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix="up-")
        tmp_path = Path(tmp)
        try:
            h = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise UploadError(f"{name}: larger than the {self.max_bytes / 1e6:.0f} MB limit per photo")
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if size == 0:
                raise UploadError(f"{name}: the file is empty")
            fmt, width, height = self._check_image(tmp_path, name)
            return StagedPhoto(tmp_path, h.hexdigest(), size, fmt, width, height, name)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise

    def _check_image(self, path: Path, name: str) -> tuple[str, int, int]:
        strict_decoding()  # the server imports weasyprint, which lets Pillow pad truncated files
        allow_canvas(self.max_megapixels)  # our cap, not Pillow's default, says what is too large
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    fmt = (im.format or "").upper()
                    if fmt not in ACCEPTED_FORMATS:
                        raise UploadError(
                            f"{name}: {fmt or 'unknown'} images are not accepted; "
                            f"send {', '.join(sorted(ACCEPTED_FORMATS))}"
                        )
                    w, h = im.size
                    if w * h > self.max_megapixels * 1e6:
                        raise UploadError(
                            f"{name}: {w}x{h} is {w * h / 1e6:.0f} megapixels, over the "
                            f"{self.max_megapixels:g} megapixel limit"
                        )
                    im.verify()
                with Image.open(path) as im:  # verify() leaves the image unusable; decode it fully once
                    im.load()
                    if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                        w, h = h, w
        except UploadError:
            raise
        except UnidentifiedImageError as e:
            raise UploadError(f"{name}: not an image (whatever its name says)") from e
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise UploadError(
                f"{name}: too many pixels, over the {self.max_megapixels:g} megapixel limit (a decompression bomb?)"
            ) from e
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise UploadError(f"{name}: corrupt or truncated image") from e
        if min(w, h) < MIN_SIDE_PX:
            raise UploadError(f"{name}: {w}x{h} is too small (need at least {MIN_SIDE_PX} px a side)")
        return fmt, w, h

    def commit(self, staged: StagedPhoto) -> bool:
        """Move a staged upload to its content address; returns False if those bytes were already stored."""
        dest = self.original_path(staged.sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            staged.tmp_path.unlink(missing_ok=True)
            return False
        os.replace(staged.tmp_path, dest)
        return True

    def discard(self, staged: StagedPhoto) -> None:
        staged.tmp_path.unlink(missing_ok=True)

    def remove_original(self, sha256: str) -> None:
        """Undo a ``commit`` whose database rows failed to save."""
        self.original_path(sha256).unlink(missing_ok=True)
        self.display_path(sha256).unlink(missing_ok=True)

    def display_copy(self, sha256: str, max_side_px: int) -> Path:
        """The browser's copy: orientation applied, RGB JPEG, every metadata block (EXIF, GPS, XMP) dropped."""
        dest = self.display_path(sha256)
        if dest.exists():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        # The same decoding as the counter's (EXIF orientation, 16-bit, palette, alpha -> 8-bit RGB).
        image = read_image(self.original_path(sha256), max_megapixels=self.max_megapixels)
        # A new image from raw pixels carries no info dict, so nothing but pixels is written.
        bare = Image.fromarray(image)
        if max(bare.size) > max_side_px:
            bare.thumbnail((max_side_px, max_side_px), Image.Resampling.LANCZOS)
        with atomic_path(dest) as tmp:
            bare.save(tmp, format="JPEG", quality=90)
        return dest
