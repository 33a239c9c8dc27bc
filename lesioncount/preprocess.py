"""Scale normalisation and tiling, each with its exact inverse.

The model sees every face at the same size (``ModelSpec.face_height_px``): a photo is resized by
``scale = face_height_px / face_box_height`` (working pixels per photo pixel), so the same face at 640 px
and at 4000 px gives the same lesions. the counting core maps working coordinates back with the same factor.

Tiles overlap; each tile contributes only its centre (half the overlap is trimmed from every inner
edge), so the stitched map equals one seamless map and a lesion on a tile border is seen once.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

#: The network's input sides must be multiples of this (stem stride x 2^3 pooling levels).
SIZE_MULTIPLE = 16  # the default for models whose metadata predates ``lesioncount.input_multiple``


def working_scale(face_height_px: float | None, image_hw: tuple[int, int], target_face_px: float) -> float:
    """Working pixels per photo pixel.

    Args:
        face_height_px: detected face-box height in photo pixels, or None when no face was found.
        image_hw: photo (height, width).
        target_face_px: the model's trained face-box height.

    Returns:
        The factor. Without a face the frame is taken as a close-up filled by the face (as in ACNE04
        frames): its shorter side is set to 1.25 face heights.
    """
    if face_height_px is not None and face_height_px > 0:
        return target_face_px / face_height_px
    return 1.25 * target_face_px / min(image_hw)


def resize(image: npt.NDArray[np.uint8], scale: float) -> npt.NDArray[np.uint8]:
    """Resize by ``scale`` (area filter when shrinking, linear when enlarging)."""
    h, w = image.shape[:2]
    return resize_to(image, (max(1, round(h * scale)), max(1, round(w * scale))))


def resize_to(image: npt.NDArray[np.uint8], hw: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """Resize to ``(height, width)``: area filter when shrinking, linear when enlarging; unchanged if equal."""
    h, w = hw
    if (h, w) == image.shape[:2]:
        return image
    shrink = h * w < image.shape[0] * image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def crop_box(mask: npt.NDArray[np.bool_], margin_px: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` bounding the True pixels plus a margin, clipped; the whole frame if none."""
    h, w = mask.shape
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return 0, 0, w, h
    return (
        max(0, int(xs[0]) - margin_px),
        max(0, int(ys[0]) - margin_px),
        min(w, int(xs[-1]) + 1 + margin_px),
        min(h, int(ys[-1]) + 1 + margin_px),
    )


def pad_to_multiple(image: npt.NDArray[np.uint8], multiple: int = SIZE_MULTIPLE) -> npt.NDArray[np.uint8]:
    """Reflect-pad bottom and right so both sides are multiples of ``multiple`` (crop back to undo)."""
    h, w = image.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return image
    mode = cv2.BORDER_REFLECT_101 if min(h, w) > 1 else cv2.BORDER_REPLICATE
    return cv2.copyMakeBorder(image, 0, ph, 0, pw, mode)


@dataclass(frozen=True)
class CountingFrame:
    """The one map between a photo's pixels and the network's working pixels, and its exact inverse.

    A photo is decoded (possibly at reduced size, ``decode_scale`` decoded pixels per photo pixel),
    cropped to ``(x0, y0, x1, y1)`` in decoded pixels, and resized to ``work_hw``; the per-axis factors
    ``fx, fy`` are the exact working pixels per decoded pixel of that resize (rounding makes them differ
    slightly from the nominal scale).
    """

    x0: int
    y0: int
    x1: int
    y1: int
    work_hw: tuple[int, int]
    decode_scale: float = 1.0

    @property
    def fx(self) -> float:
        return self.work_hw[1] / max(1, self.x1 - self.x0)

    @property
    def fy(self) -> float:
        return self.work_hw[0] / max(1, self.y1 - self.y0)

    @property
    def scale(self) -> float:
        """Working pixels per photo pixel (the mean of the two axes)."""
        return (self.fx + self.fy) / 2 * self.decode_scale

    def work_to_decoded(self, xy: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(N, 2) working-pixel points -> decoded-image pixels."""
        p = np.asarray(xy, np.float64).reshape(-1, 2)
        return np.column_stack([self.x0 + p[:, 0] / self.fx, self.y0 + p[:, 1] / self.fy])

    def work_to_photo(self, xy: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(N, 2) working-pixel points -> photo pixels."""
        return self.work_to_decoded(xy) / self.decode_scale

    def photo_to_work(self, xy: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(N, 2) photo-pixel points -> working pixels (the exact inverse of ``work_to_photo``)."""
        p = np.asarray(xy, np.float64).reshape(-1, 2) * self.decode_scale
        return np.column_stack([(p[:, 0] - self.x0) * self.fx, (p[:, 1] - self.y0) * self.fy])

    def sizes_to_photo(self, wh: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(N, 2) working-pixel widths and heights -> photo pixels."""
        s = np.asarray(wh, np.float64).reshape(-1, 2)
        return np.column_stack([s[:, 0] / self.fx, s[:, 1] / self.fy]) / self.decode_scale

    def apply(self, decoded: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """The working image: the crop of the decoded image, resized to ``work_hw``."""
        return resize_to(np.ascontiguousarray(decoded[self.y0 : self.y1, self.x0 : self.x1]), self.work_hw)


def counting_frame(
    area: npt.NDArray[np.bool_], scale: float, margin_work_px: int, decode_scale: float = 1.0
) -> CountingFrame:
    """The frame around the True pixels of ``area`` (decoded-image resolution) plus a working-pixel margin.

    Args:
        area: HxW bool, where lesions are counted.
        scale: working pixels per decoded pixel.
        margin_work_px: context kept around the area, in working pixels.
        decode_scale: decoded pixels per photo pixel.
    """
    x0, y0, x1, y1 = crop_box(area, margin_px=max(1, int(margin_work_px / scale)))
    work_hw = (max(1, round((y1 - y0) * scale)), max(1, round((x1 - x0) * scale)))
    return CountingFrame(x0, y0, x1, y1, work_hw, decode_scale)


@dataclass(frozen=True)
class Tile:
    """One tile: its input window and which part of its output is kept.

    ``y0:y1, x0:x1`` is the input window (working pixels); ``keep_*`` are the kept rows/columns of the
    window, also in working pixels relative to the window.
    """

    y0: int
    x0: int
    y1: int
    x1: int
    keep_y0: int
    keep_x0: int
    keep_y1: int
    keep_x1: int


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return sorted(set(starts))


def plan_tiles(height: int, width: int, tile_px: int, overlap_px: int, multiple: int = SIZE_MULTIPLE) -> list[Tile]:
    """Cover an image (sides multiples of the model's input ``multiple``) with overlapping tiles.

    Every pixel is kept by exactly one tile: neighbouring tiles split their overlap at its middle.
    """
    if tile_px % multiple or overlap_px % multiple or overlap_px >= tile_px:
        raise ValueError(
            f"tile_px ({tile_px}) and overlap_px ({overlap_px}) must be multiples of {multiple}, overlap < tile"
        )
    step = tile_px - overlap_px
    tiles = []
    ys, xs = _starts(height, tile_px, step), _starts(width, tile_px, step)
    for i, y0 in enumerate(ys):
        y1 = min(height, y0 + tile_px)
        ky0 = 0 if i == 0 else (ys[i - 1] + tile_px + y0) // 2 - y0
        ky1 = y1 - y0 if i == len(ys) - 1 else (y0 + tile_px + ys[i + 1]) // 2 - y0
        for j, x0 in enumerate(xs):
            x1 = min(width, x0 + tile_px)
            kx0 = 0 if j == 0 else (xs[j - 1] + tile_px + x0) // 2 - x0
            kx1 = x1 - x0 if j == len(xs) - 1 else (x0 + tile_px + xs[j + 1]) // 2 - x0
            tiles.append(Tile(y0, x0, y1, x1, ky0, kx0, ky1, kx1))
    return tiles
