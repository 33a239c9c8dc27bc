"""Read any photo into an HxWx3 uint8 RGB array as a viewer shows it; write JSON atomically.

Pillow reads every format (with pillow-heif registered for HEIC); baseline JPEGs are decoded by
libjpeg-turbo through simplejpeg, whose strict mode reports the corrupt scan data that Pillow passes
over in silence. An embedded colour profile other than sRGB (Display P3, Adobe RGB, a CMYK press profile)
is converted to sRGB with LittleCMS (Pillow's ImageCms), so that the same photo stored in another colour
space reaches the model as the same pixels. EXIF orientation is applied once, 16-bit, float, grayscale,
palette and alpha images are reduced to 8-bit RGB, and what a reader should know about the decode (a
grayscale photo, extra frames, damaged data) is returned beside the pixels. Every failure is an
``ImageReadError`` whose message says what is wrong with the file in one line.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import simplejpeg
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

try:  # HEIC support is optional at run time: the core works without it.
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIC_SUPPORTED = True
except ImportError:  # pragma: no cover - depends on the install
    HEIC_SUPPORTED = False

#: File extensions searched for when a folder is given.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".heic", ".heif", ".mpo"})
#: Image formats found in folders but not counted (reported as skipped, with the reason).
UNSUPPORTED_EXTENSIONS = frozenset({".gif", ".avif", ".jxl", ".svg", ".raw", ".cr2", ".nef", ".arw", ".dng", ".psd"})
#: A photo longer than this many times its width (or wider) is refused: a strip, not a face.
MAX_ASPECT_RATIO = 6.0
#: Name prefix and suffix of the temporary files behind every atomic write (stale ones are safe to delete).
TEMP_PREFIX, TEMP_SUFFIX = ".lc-", ".tmp"
#: Default cap on decoded size; a decompression bomb or a giant scan fails fast with a clear message.
DEFAULT_MAX_MEGAPIXELS = 100.0
#: A file this large in pixels (Pillow's own warning level) that packs more than this many pixels per byte
#: is a decompression bomb, whatever the cap: no photo compresses a thousandfold.
BOMB_MIN_PIXELS, BOMB_PIXELS_PER_BYTE = 89_478_485, 1000
#: Photos smaller than this on either side cannot show countable lesions.
MIN_SIDE_PX = 64


class ImageReadError(ValueError):
    """A photo could not be read; the message is one line, ``"<path>: <reason>"``.

    Attributes:
        path: the photo.
        reason: what is wrong with it, without the path.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"{show_path(path)}: {reason}")


def show_path(path: str | os.PathLike[str]) -> str:
    """A path for one-line messages: newlines, control characters and undecodable bytes escaped."""
    return "".join(c if c.isprintable() else _escape(c) for c in _undecodable_escaped(str(path)))


def _escape(c: str) -> str:
    return c.encode("unicode_escape", "backslashreplace").decode("ascii")


def _undecodable_escaped(text: str) -> str:
    """File-name bytes that are not UTF-8 (held as surrogates) written as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class LoadedImage:
    """A decoded photo.

    Attributes:
        image: HxWx3 uint8 RGB, possibly decoded at reduced size (see ``decode_scale``).
        width: full width in pixels after EXIF orientation.
        height: full height in pixels after EXIF orientation.
        decode_scale: ``image`` pixels per full-photo pixel (1.0, or 1/2, 1/4, 1/8 for JPEG draft decoding).
        sha256: hex digest of the file bytes.
        notes: what a reader of the count should know about the decode (extra frames, converted colours).
        grayscale: the photo has no colour; the model reads colour, so its counts are not graded.
        damaged: the decoder's report of corrupt data that it concealed, or None; such photos are not graded.
    """

    image: npt.NDArray[np.uint8]
    width: int
    height: int
    decode_scale: float
    sha256: str
    notes: tuple[str, ...] = field(default=())
    grayscale: bool = False
    damaged: str | None = None

    @property
    def gradable(self) -> bool:
        """Whether a grade may be given from these pixels."""
        return not self.grayscale and self.damaged is None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: Pillow's ``Image.transpose`` method for each EXIF orientation, applied to decoded arrays.
_ORIENT_OPS: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
#: File signatures, to name the format of a file Pillow could not open.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"GIF8", "GIF"),
)


def _orient_array(a: npt.NDArray[np.uint8], orientation: int) -> npt.NDArray[np.uint8]:
    """An array as a viewer shows it: the EXIF orientation's flip or rotation (Pillow's meaning)."""
    op = _ORIENT_OPS.get(orientation)
    if op is None:
        return a
    flip_lr, rot180, flip_tb = (
        Image.Transpose.FLIP_LEFT_RIGHT,
        Image.Transpose.ROTATE_180,
        Image.Transpose.FLIP_TOP_BOTTOM,
    )
    out = {
        flip_lr: lambda: a[:, ::-1],
        rot180: lambda: a[::-1, ::-1],
        flip_tb: lambda: a[::-1],
        Image.Transpose.TRANSPOSE: lambda: a.transpose(1, 0, 2),
        Image.Transpose.ROTATE_270: lambda: np.rot90(a, -1),
        Image.Transpose.TRANSVERSE: lambda: a[::-1, ::-1].transpose(1, 0, 2),
        Image.Transpose.ROTATE_90: lambda: np.rot90(a, 1),
    }[op]()
    return np.ascontiguousarray(out)


def _to_rgb8(im: Image.Image) -> npt.NDArray[np.uint8]:
    """Any Pillow mode -> HxWx3 uint8 RGB; alpha is composited on white, 16-bit and float rescaled."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        finite = a[np.isfinite(a)]
        top = float(finite.max()) if finite.size else 0.0
        if im.mode == "F" and top <= 1.0:
            hi = 1.0  # float images in [0, 1] (scientific TIFFs): 1.0 is white
        elif im.mode.startswith("I;16") or top > 255:
            hi = 65535.0
        else:
            hi = 255.0
        g = np.clip(np.nan_to_num(a) / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


@functools.lru_cache(maxsize=16)
def _srgb_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """A LittleCMS transform from an embedded profile to sRGB; None for sRGB itself (nothing to do).

    Raises:
        ImageCms.PyCMSError: the profile is broken or does not fit the pixels' mode.
    """
    src = ImageCms.ImageCmsProfile(BytesIO(icc))
    if mode == "RGB" and "srgb" in (ImageCms.getProfileDescription(src) or "").lower().replace(" ", ""):
        return None
    return ImageCms.buildTransform(
        src, ImageCms.createProfile("sRGB"), mode, "RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL
    )


def _to_srgb(im: Image.Image, icc: bytes | None, notes: list[str]) -> Image.Image:
    """An 8-bit RGB or CMYK image with an embedded profile, converted to sRGB through it.

    A profile that LittleCMS cannot read leaves the pixels as they are, with a note.
    """
    if not icc or im.mode not in ("RGB", "CMYK"):
        return im
    try:
        transform = _srgb_transform(icc, im.mode)
    except (ImageCms.PyCMSError, OSError, ValueError) as e:
        notes.append(f"colour profile could not be read ({str(e).splitlines()[0] if str(e) else 'broken'}): ignored")
        return im
    if transform is None:
        return im
    converted = ImageCms.applyTransform(im, transform)
    return im if converted is None else converted  # None only for an in-place transform


def looks_gray(image: npt.NDArray[np.uint8]) -> bool:
    """True when the colour channels are (almost) equal everywhere: a grayscale photo stored as RGB."""
    sub = image[:: max(1, image.shape[0] // 200), :: max(1, image.shape[1] // 200)].astype(np.int16)
    spread = sub.max(axis=2) - sub.min(axis=2)
    return bool(np.mean(spread <= 3) > 0.999)


def _format_megapixels(mp: float, cap: float) -> str:
    """Enough decimals that a photo over the cap never prints as equal to it."""
    for digits in (0, 1, 2, 3):
        text = f"{mp:.{digits}f}"
        if float(text) > cap:
            return text
    return f"{mp:.4f}"


def _unidentified_reason(p: Path, data: bytes) -> str:
    """Why Pillow could not open a file: the named format's own parser error, when the signature is known."""
    fmt = next((name for magic, name in _MAGIC if data.startswith(magic)), None)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        fmt = "WEBP"
    if fmt is None:
        return "not a readable image (unknown or unsupported format)"
    if fmt == "GIF":
        return "GIF is not supported (convert the photo to JPEG or PNG)"
    factory = Image.OPEN.get(fmt, (None, None))[0]
    detail = ""
    if factory is not None:
        try:
            factory(BytesIO(data), str(p))
        except Exception as e:  # noqa: BLE001 - any parser error is the detail we want to show
            detail = str(e).splitlines()[0] if str(e) else e.__class__.__name__
    return f"corrupt {fmt} file ({detail or 'its header could not be parsed'})"


def _draft_factor(short_side: int, min_short_side_px: int | None, min_decode_scale: float | None) -> int:
    """The JPEG reduction (1, 2, 4 or 8) that keeps both the short side and the scale at their minimum."""
    factor = 1
    while factor < 8:
        nxt = factor * 2
        if min_short_side_px is not None and short_side // nxt < min_short_side_px:
            break
        if min_decode_scale is not None and 1.0 / nxt < min_decode_scale:
            break
        if min_short_side_px is None and min_decode_scale is None:
            break
        factor = nxt
    return factor


def _decode_jpeg(
    data: bytes, w0: int, h0: int, factor: int, gray: bool
) -> tuple[npt.NDArray[np.uint8] | None, str | None]:
    """libjpeg-turbo decode at 1/factor: ``(pixels, None)``, or ``(pixels, report)`` on corrupt data that it
    could conceal, or ``(None, report)`` when it could not decode at all.

    Pillow conceals corrupt scan data (garbage, lost restart markers) without a word; libjpeg-turbo
    reports it as a warning, which simplejpeg's strict mode turns into an error we can show.
    """
    kwargs: dict[str, Any] = {
        "min_width": -(-w0 // factor),
        "min_height": -(-h0 // factor),
        "colorspace": "GRAY" if gray else "RGB",
    }
    damaged: str | None = None
    try:
        a = simplejpeg.decode_jpeg(data, strict=True, **kwargs)
    except ValueError as e:
        report = str(e).splitlines()[0] if str(e) else "corrupt data"
        if "premature end of jpeg file" in report.lower():
            raise OSError("image file is truncated") from e
        try:  # decode what libjpeg-turbo can recover; the caller flags the photo as damaged
            a = simplejpeg.decode_jpeg(data, strict=False, **kwargs)
        except ValueError:
            return None, report
        damaged = report
    if gray:
        a = np.repeat(a.reshape(a.shape[0], a.shape[1], 1), 3, axis=2)
    return np.ascontiguousarray(a), damaged


def _check_canvas(p: Path, w0: int, h0: int, n_bytes: int, max_megapixels: float) -> None:
    """Refuse, from the header alone, a photo too large, a decompression bomb, a tiny image or a strip."""
    if w0 * h0 > max_megapixels * 1e6:
        raise ImageReadError(
            p,
            f"{w0}x{h0} is {_format_megapixels(w0 * h0 / 1e6, max_megapixels)} megapixels, over the cap "
            f"of {max_megapixels:g} (raise --max-megapixels if the photo is genuine)",
        )
    if w0 * h0 > BOMB_MIN_PIXELS and n_bytes * BOMB_PIXELS_PER_BYTE < w0 * h0:
        raise ImageReadError(
            p,
            f"decompression bomb: {n_bytes / 1e3:.0f} kB claim a canvas of {w0 * h0 / 1e6:.0f} megapixels ({w0}x{h0})",
        )
    if min(w0, h0) < MIN_SIDE_PX:
        raise ImageReadError(p, f"{w0}x{h0} is too small (need at least {MIN_SIDE_PX} px a side)")
    if max(w0, h0) > MAX_ASPECT_RATIO * min(w0, h0):
        raise ImageReadError(
            p,
            f"{w0}x{h0} is a strip ({max(w0, h0) / min(w0, h0):.0f}:1), not a face photo "
            f"(the limit is {MAX_ASPECT_RATIO:g}:1)",
        )


def _frames_note(im: Image.Image) -> list[str]:
    """A note when the file holds more than one image (only the first is counted)."""
    n_frames = int(getattr(im, "n_frames", 1))
    if n_frames <= 1:
        return []
    kind = {"MPO": "multi-picture (MPO) file", "TIFF": "multi-page TIFF"}.get(
        im.format or "", f"animated {im.format}" if getattr(im, "is_animated", False) else "file"
    )
    return [f"{kind} with {n_frames} images: only the first was counted"]


def _decode(
    im: Image.Image, data: bytes, factor: int, gray: bool
) -> tuple[npt.NDArray[np.uint8], str | None, list[str]]:
    """The pixels as a viewer shows them (EXIF orientation applied once), the damage report and notes.

    Baseline JPEGs go through libjpeg-turbo (strict, at 1/``factor``); CMYK JPEGs and other formats
    through Pillow, a CMYK JPEG's scan data still checked.
    """
    w0, h0 = im.size
    notes: list[str] = []
    damaged = None
    decoded = None
    icc = im.info.get("icc_profile") or None
    if im.mode == "CMYK" and not icc:
        notes.append(f"CMYK {im.format} has no colour profile: converted to RGB by formula, colours may be off")
    if im.format in ("JPEG", "MPO"):
        simple = im.mode in ("RGB", "L")
        decoded, damaged = _decode_jpeg(data, w0, h0, factor if simple else 8, gray)
        if not simple:
            decoded = None  # CMYK or YCCK: Pillow converts; the check above still ran
        if decoded is None and factor > 1:
            im.draft(im.mode if im.mode == "CMYK" else "RGB", (w0 // factor, h0 // factor))
    if decoded is not None:
        if icc and not gray:
            decoded = np.asarray(_to_srgb(Image.fromarray(decoded), icc, notes), dtype=np.uint8)
        return _orient_array(decoded, int(im.getexif().get(0x0112, 1) or 1)), damaged, notes
    # Damaged JPEGs come here too: Pillow still refuses a truncated file.
    im.load()
    # Pillow applies a TIFF's orientation while reading; exif_transpose then does nothing.
    return _to_rgb8(_to_srgb(ImageOps.exif_transpose(im), icc, notes)), damaged, notes


def load_image(
    path: str | os.PathLike[str],
    *,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    min_short_side_px: int | None = None,
    min_decode_scale: float | None = None,
) -> LoadedImage:
    """Read a photo as a viewer shows it.

    Args:
        path: JPEG, PNG, TIFF, WebP, BMP, MPO or HEIC file.
        max_megapixels: refuse larger photos (decompression bombs, giant scans); it also bounds the work.
        min_short_side_px: when given, a JPEG may be decoded at 1/2, 1/4 or 1/8 size (much faster) as long
            as its shorter side stays at least this long. None decodes at full size.
        min_decode_scale: when given, a reduced JPEG decode keeps at least this many pixels per photo pixel
            (the next reduced size that is large enough, never more than needed).

    Returns:
        The decoded photo; ``decode_scale`` relates its pixels to the full photo's.

    Raises:
        ImageReadError: the file is missing, empty, not an image, truncated, too small, too large or a strip.
    """
    p = Path(path)
    try:
        if not p.is_file():
            if p.is_symlink() and not p.exists():
                raise ImageReadError(p, "broken symbolic link (or a link loop)")
            raise ImageReadError(p, "a folder, not a photo" if p.is_dir() else "no such file")
        data = p.read_bytes()
    except OSError as e:
        raise ImageReadError(p, f"cannot be read ({e.strerror or e.__class__.__name__})") from e
    if not data:
        raise ImageReadError(p, "empty file")
    digest = hashlib.sha256(data).hexdigest()
    strict_decoding()
    allow_canvas(max_megapixels)
    notes: list[str] = []
    damaged: str | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data)) as im:
                w0, h0 = im.size
                _check_canvas(p, w0, h0, len(data), max_megapixels)
                notes += _frames_note(im)
                gray = im.mode in _GRAY_MODES
                factor = _draft_factor(min(w0, h0), min_short_side_px, min_decode_scale)
                image, damaged, more = _decode(im, data, factor, gray)
                notes += more
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageReadError(p, f"decompression bomb: the file claims a canvas beyond Pillow's limit ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageReadError(p, _unidentified_reason(p, data)) from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageReadError(
            p, f"corrupt or truncated image ({str(e).splitlines()[0] if str(e) else e.__class__.__name__})"
        ) from e
    # The full size as a viewer shows it: the decoded array's orientation, at full resolution.
    if (image.shape[1] >= image.shape[0]) == (w0 >= h0) or w0 == h0:
        full_w, full_h = w0, h0
    else:
        full_w, full_h = h0, w0
    gray = gray or looks_gray(image)
    return LoadedImage(
        image=image,
        width=full_w,
        height=full_h,
        decode_scale=image.shape[1] / full_w,
        sha256=digest,
        notes=tuple(notes),
        grayscale=gray,
        damaged=damaged,
    )


def allow_canvas(max_megapixels: float) -> None:
    """Our megapixel cap replaces Pillow's bomb limit: raise Pillow's (never lower it) so that a cap above
    its default works; each reader then checks the header against its cap before any pixel is decoded."""
    limit = max_megapixels * 1e6
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = int(limit)


def strict_decoding() -> None:
    """Make Pillow refuse truncated files again, before any decode that must catch them.

    Some libraries (weasyprint, on import) switch Pillow to silently padding truncated files with grey, and
    the setting is process-wide: a truncated photo must be an error for every reader, so each one calls this.
    """
    ImageFile.LOAD_TRUNCATED_IMAGES = False


def read_image(
    path: str | os.PathLike[str], *, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
) -> npt.NDArray[np.uint8]:
    """Read a photo at full size as HxWx3 uint8 RGB (EXIF orientation applied)."""
    return load_image(path, max_megapixels=max_megapixels).image


def _default_mode() -> int:
    """The mode a new file gets under the process's umask (mkstemp's files are 0600 otherwise)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_mode()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    A crash or an exception never leaves a half-written file: the temporary file is removed. Its name
    (``.lc-<random>.tmp``) does not grow with the target's, so long file names keep working, and the
    file gets the same mode as any file the process creates.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.parent / f"{TEMP_PREFIX}{secrets.token_hex(6)}{TEMP_SUFFIX}"
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, p)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def remove_stale_temps(folder: str | os.PathLike[str]) -> int:
    """Delete the temporary files that killed runs left anywhere under ``folder``; returns how many."""
    n = 0
    with contextlib.suppress(OSError):
        for q in Path(folder).rglob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                q.unlink()
                n += 1
    return n


def write_image(path: str | os.PathLike[str], image: npt.NDArray[np.uint8], *, quality: int = 90) -> None:
    """Write an HxWx3 uint8 RGB array (JPEG/PNG by extension), atomically."""
    fmt = "JPEG" if Path(path).suffix.lower() in (".jpg", ".jpeg") else "PNG"
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON atomically: a crash never leaves a half-written file behind."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text atomically; characters that cannot be encoded (undecodable file-name bytes) are escaped."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(_undecodable_escaped(text).encode("utf-8", "backslashreplace"))


@dataclass(frozen=True)
class Inputs:
    """Photos found in the paths a user gave, and what was passed over.

    Attributes:
        photos: the photos, in a stable order (each argument's folder tree sorted).
        names: for each photo, its path relative to the folder argument it was found in (an explicit file:
            its file name); output names derive from it, so they do not change when other photos are added.
        skipped: ``(path, reason)`` of each file or folder passed over.
    """

    photos: list[Path]
    names: list[str]
    skipped: list[tuple[Path, str]]


#: Suffixes of the files lesioncount writes next to its JSONs; never taken as photos.
OUTPUT_SUFFIXES = (".overlay.jpg",)


def _skip_reason(name: str) -> str | None:
    """Why a file inside a folder is not a photo to count, or None when it is one."""
    low = name.lower()
    suffix = Path(low).suffix
    if name.startswith("."):
        return "hidden file"
    if any(low.endswith(s) for s in OUTPUT_SUFFIXES):
        return "an output of lesioncount"
    if suffix in UNSUPPORTED_EXTENSIONS:
        return f"unsupported format ({suffix})"
    if suffix not in IMAGE_EXTENSIONS:
        return f"not a photo ({suffix or 'no extension'})"
    return None


def scan_inputs(paths: list[str | os.PathLike[str]], *, exclude: list[Path] | None = None) -> Inputs:
    """Expand photos and folders (searched recursively) into photos, and report what was passed over.

    Files given explicitly are kept whatever their extension (so a bad file is reported, not ignored).
    Inside folders, known image extensions are taken; other files, hidden files, lesioncount's own outputs,
    unreadable folders and symbolic links to folders (not followed: give them explicitly) are reported
    as skipped. Folders in ``exclude`` (the output folder) are not searched. A photo reached twice is kept once.
    """
    excluded = {os.path.realpath(e) for e in (exclude or [])}
    photos: list[Path] = []
    names: list[str] = []
    skipped: list[tuple[Path, str]] = []
    seen: set[str] = set()

    def take(q: Path, name: str) -> None:
        key = os.path.realpath(q)
        if key not in seen:
            seen.add(key)
            photos.append(q)
            names.append(name)

    for raw in paths:
        root = Path(raw)
        if not root.is_dir():
            take(root, root.name)
            continue

        def unreadable(e: OSError, root: Path = root) -> None:
            skipped.append((Path(e.filename or root), f"folder cannot be read ({e.strerror or e})"))

        for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
            here = Path(dirpath)
            keep = []
            for d in sorted(dirnames):
                sub = here / d
                if sub.is_symlink():
                    skipped.append((sub, "symbolic link to a folder, not followed (give it explicitly to count it)"))
                elif os.path.realpath(sub) in excluded:
                    continue
                elif d.startswith("."):
                    skipped.append((sub, "hidden folder"))
                else:
                    keep.append(d)
            dirnames[:] = keep
            for f in sorted(filenames):
                q = here / f
                why = _skip_reason(f)
                if why is None and not q.is_file():
                    why = "broken symbolic link"
                if why is not None:
                    skipped.append((q, why))
                else:
                    take(q, q.relative_to(root).as_posix())
    return Inputs(photos, names, skipped)


def find_images(paths: list[str | os.PathLike[str]]) -> list[Path]:
    """The photos of ``scan_inputs`` (photos and folders searched recursively), without the report."""
    return scan_inputs(paths).photos
