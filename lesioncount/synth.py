"""Render synthetic acne lesions, acne scars and post-inflammatory marks onto real skin, with exact masks.

Used three ways: scars for training (no public located scar data exists), flat red/brown marks as hard
negatives (they must not be counted), and planted lesions of known number for the demo and tests.
Pure numpy/OpenCV: no torch. Every lesion is drawn from a radial profile of an ellipse whose distance
field is bent by smooth noise, with lighting from the upper left for raised or sunken lesions.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

#: Kind -> the class the counting core must report (None: not a lesion, must not be counted).
KINDS: dict[str, str | None] = {
    "papule": "inflammatory",
    "pustule": "inflammatory",
    "nodule": "inflammatory",
    "blackhead": "comedone",
    "whitehead": "comedone",
    "icepick": "scar",
    "boxcar": "scar",
    "rolling": "scar",
    "hypertrophic": "scar",
    "red_mark": None,
    "brown_mark": None,
}

#: Typical radius range in pixels at the model's working scale (ACNE04 640 px frames: lesions 3-12 px across).
RADIUS_PX: dict[str, tuple[float, float]] = {
    "papule": (3.0, 6.0),
    "pustule": (3.0, 6.0),
    "nodule": (6.0, 10.0),
    "blackhead": (1.2, 2.5),
    "whitehead": (1.8, 3.5),
    "icepick": (1.2, 2.2),
    "boxcar": (3.0, 6.0),
    "rolling": (6.0, 11.0),
    "hypertrophic": (3.5, 7.0),
    "red_mark": (4.0, 9.0),
    "brown_mark": (4.0, 9.0),
}

ACNE_KINDS = ("papule", "pustule", "nodule", "blackhead", "whitehead")
SCAR_KINDS = ("icepick", "boxcar", "rolling", "hypertrophic")
MARK_KINDS = ("red_mark", "brown_mark")


@dataclass(frozen=True)
class PlantedLesion:
    """A rendered lesion. ``cls`` is None for marks (hard negatives)."""

    kind: str
    cls: str | None
    x: float
    y: float
    radius: float
    bbox: tuple[float, float, float, float]


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _distance_field(
    size: int, radius: float, rng: np.random.Generator, *, irregular: float
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Normalised distance d (1 at the rim), and unit x/y offsets, on a size x size patch."""
    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - c, yy - c
    theta = rng.uniform(0, np.pi)
    ecc = rng.uniform(0.75, 1.0)
    ct, st = np.cos(theta), np.sin(theta)
    u = (dx * ct + dy * st) / radius
    v = (-dx * st + dy * ct) / (radius * ecc)
    d = np.sqrt(u * u + v * v)
    if irregular > 0:
        ang = np.arctan2(dy, dx)
        wobble = sum(rng.uniform(-1, 1) * np.cos(k * ang + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
        d = d * (1 + irregular * wobble / 3)
    return d.astype(np.float32), (dx / radius).astype(np.float32), (dy / radius).astype(np.float32)


def render(
    image: npt.NDArray[np.uint8],
    kind: str,
    x: float,
    y: float,
    radius: float,
    rng: np.random.Generator | int | None = None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Draw one lesion of ``kind`` centred at (x, y); returns a new image and the lesion's mask.

    Args:
        image: HxWx3 uint8 RGB (not modified).
        kind: a key of ``KINDS``.
        x: centre column in pixels.
        y: centre row in pixels.
        radius: lesion radius in pixels.
        rng: randomness for shape and colour.

    Returns:
        ``(new_image, mask)``: mask is HxW bool, True where the lesion changed the skin.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown lesion kind {kind!r}; choose one of {', '.join(KINDS)}")
    rng = _as_rng(rng)
    h, w = image.shape[:2]
    half = int(np.ceil(radius * 2.6)) + 2
    x0, y0 = int(round(x)) - half, int(round(y)) - half
    size = 2 * half + 1
    d, ux, uy = _distance_field(
        size, radius, rng, irregular=0.25 if kind in ("hypertrophic", "rolling", "boxcar") else 0.1
    )
    px0, py0, px1, py1 = max(0, x0), max(0, y0), min(w, x0 + size), min(h, y0 + size)
    if px1 <= px0 or py1 <= py0:
        return image.copy(), np.zeros((h, w), bool)
    sl = (slice(py0 - y0, py1 - y0), slice(px0 - x0, px1 - x0))
    d, ux, uy = d[sl], ux[sl], uy[sl]
    patch = image[py0:py1, px0:px1].astype(np.float32)
    skin = patch.mean(axis=(0, 1))
    # "Light from the upper left": a raised lesion is brighter on its upper-left slope.
    slope = -(ux + uy) / np.sqrt(2)
    inside = np.clip(1 - d, 0, 1)
    soft = np.exp(-(d**2) * 2.2)
    lit = np.zeros_like(d)
    out = patch.copy()

    def tint(rgb_gain: tuple[float, float, float], weight: npt.NDArray[np.float32]) -> None:
        out[:] = out * (1 + (np.asarray(rgb_gain, np.float32) - 1) * weight[..., None])

    def blend(colour: npt.NDArray[np.float32] | tuple[float, float, float], weight: npt.NDArray[np.float32]) -> None:
        out[:] = out * (1 - weight[..., None]) + np.asarray(colour, np.float32) * weight[..., None]

    s = rng.uniform(0.8, 1.2)
    if kind in ("papule", "pustule", "nodule"):
        red = 0.55 if kind == "nodule" else 0.4
        tint((1.0 + 0.05 * s, 1 - red * s, 1 - red * 0.85 * s), soft)
        lit = slope * soft * 0.18
        if kind == "pustule":
            core = np.clip(1 - d / 0.45, 0, 1) ** 0.7
            blend((250, 240, 195), core * 0.9)
    elif kind == "blackhead":
        core = np.clip((1 - d) * 2.5, 0, 1)
        blend((45 * s, 35 * s, 30 * s), core * rng.uniform(0.75, 0.95))
        lit = slope * soft * 0.06
    elif kind == "whitehead":
        blend(np.minimum(skin * 1.18 + 12, 255), soft * 0.7)
        tint((1.0, 0.97, 0.93), soft)
        lit = slope * soft * 0.25
    elif kind == "icepick":
        core = np.clip((1 - d) * 2.0, 0, 1)
        blend(skin * 0.35, core * 0.85)
        lit = -slope * soft * 0.1
    elif kind == "boxcar":
        floor = np.clip((1 - d) * 6, 0, 1)  # steep walls, flat floor
        tint((0.84, 0.8, 0.8), floor)
        wall = np.exp(-((d - 0.9) ** 2) / 0.02)
        lit = -slope * wall * 0.35
    elif kind == "rolling":
        bowl = np.clip(1 - d**2, 0, 1)
        tint((0.92, 0.9, 0.9), bowl)
        lit = -slope * bowl * 0.16
    elif kind == "hypertrophic":
        mound = np.clip((1 - d) * 3, 0, 1)
        blend(np.minimum(skin * np.array([1.08, 0.92, 0.94]) + 10, 255), mound * 0.6)
        lit = slope * mound * 0.3
        spec = np.exp(-(((ux + 0.35) ** 2 + (uy + 0.35) ** 2) / 0.05)) * mound
        blend((255, 250, 245), spec * 0.45)
    elif kind == "red_mark":
        tint((1.0, 1 - 0.22 * s, 1 - 0.18 * s), soft)
    elif kind == "brown_mark":
        tint((1 - 0.18 * s, 1 - 0.26 * s, 1 - 0.32 * s), soft)
    out = out * (1 + lit[..., None])
    # Per-lesion grain so lesions are not perfectly smooth.
    out += rng.normal(0, 2.0, out.shape).astype(np.float32) * (inside[..., None] > 0)
    new = image.copy()
    new[py0:py1, px0:px1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[py0:py1, px0:px1] = d <= 1.0
    return new, mask


def plant(
    image: npt.NDArray[np.uint8],
    counts: dict[str, int],
    rng: np.random.Generator | int | None = None,
    *,
    allowed: npt.NDArray[np.bool_] | None = None,
    avoid: list[tuple[float, float, float]] | None = None,
    scale: float = 1.0,
    min_gap: float = 2.0,
) -> tuple[npt.NDArray[np.uint8], list[PlantedLesion]]:
    """Plant ``counts[kind]`` lesions at random non-overlapping places.

    Args:
        image: HxWx3 uint8 RGB (not modified).
        counts: kind -> how many.
        rng: randomness.
        allowed: HxW bool; centres are drawn only where True (skin, say). None allows the whole frame.
        avoid: ``(x, y, r)`` circles (labelled lesions) to keep away from.
        scale: multiplies the typical radii (``RADIUS_PX`` is at the model's working scale).
        min_gap: extra free distance between lesions, in radii.

    Returns:
        The new image and the planted lesions (those that did not fit are left out).
    """
    rng = _as_rng(rng)
    h, w = image.shape[:2]
    if allowed is None:
        allowed = np.ones((h, w), bool)
    ys, xs = np.nonzero(allowed)
    placed: list[tuple[float, float, float]] = list(avoid or [])
    planted: list[PlantedLesion] = []
    out = image
    if len(xs) == 0:
        return image.copy(), planted
    order = [k for k, n in counts.items() for _ in range(n)]
    rng.shuffle(order)
    for kind in order:
        lo, hi = RADIUS_PX[kind]
        r = float(rng.uniform(lo, hi) * scale)
        for _ in range(30):
            i = int(rng.integers(len(xs)))
            cx, cy = float(xs[i]), float(ys[i])
            if not (r * 2 < cx < w - r * 2 and r * 2 < cy < h - r * 2):
                continue
            if all((cx - px) ** 2 + (cy - py) ** 2 > ((r + pr) * (1 + min_gap)) ** 2 for px, py, pr in placed):
                break
        else:
            continue
        out, mask = render(out, kind, cx, cy, r, rng)
        yy, xx = np.nonzero(mask)
        bbox = (
            (float(xx.min()), float(yy.min()), float(xx.max() - xx.min() + 1), float(yy.max() - yy.min() + 1))
            if len(xx)
            else (cx - r, cy - r, 2 * r, 2 * r)
        )
        placed.append((cx, cy, r))
        planted.append(PlantedLesion(kind, KINDS[kind], cx, cy, r, bbox))
    return (out if planted else image.copy()), planted


def skin_tone_mask(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """A loose skin-colour mask (YCrCb box), for choosing where to plant; not the counting skin mask."""
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    m = (ycc[..., 1] >= 135) & (ycc[..., 1] <= 180) & (ycc[..., 2] >= 85) & (ycc[..., 2] <= 135) & (ycc[..., 0] > 60)
    return cv2.erode(m.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)


def change_exposure(image: npt.NDArray[np.uint8], stops: float) -> npt.NDArray[np.uint8]:
    """Scale linear light by 2**stops (sRGB-ish gamma 2.2), clipping at white."""
    lin = (image.astype(np.float32) / 255.0) ** 2.2 * (2.0**stops)
    return np.clip(np.clip(lin, 0, 1) ** (1 / 2.2) * 255 + 0.5, 0, 255).astype(np.uint8)


#: What the demo plants: acne of every kind, scars, and flat marks that must NOT be counted.
DEMO_PLAN: dict[str, int] = {
    "papule": 6,
    "pustule": 4,
    "blackhead": 4,
    "whitehead": 4,
    "boxcar": 2,
    "icepick": 2,
    "rolling": 1,
    "red_mark": 3,
    "brown_mark": 2,
}

#: The planted-lesion check of a shipped model (``tests/test_shipped_model.py``) and of its calibration:
#: ``demo_photo(PLANTED_CHECK_SEED, upscale=PLANTED_CHECK_UPSCALE, plan=PLANTED_CHECK_PLAN)``, a 3072 px
#: photo whose face is about 670 px high, must give at least ``PLANTED_CHECK_RECALL`` of its planted
#: inflammatory lesions back.
PLANTED_CHECK_PLAN = {"papule": 5, "pustule": 4, "nodule": 2, "blackhead": 3, "whitehead": 3, "boxcar": 2, "icepick": 2}
PLANTED_CHECK_SEED, PLANTED_CHECK_UPSCALE, PLANTED_CHECK_RECALL = 5, 6, 0.75


def planted_photo(
    rng: np.random.Generator | int | None = 0, *, upscale: int = 4, plan: dict[str, int] | None = None
) -> tuple[npt.NDArray[np.uint8], list[PlantedLesion]]:
    """The astronaut photo enlarged ``upscale`` times with planted lesions (photo pixel coordinates).

    scikit-image's ``astronaut`` (Eileen Collins, NASA: public domain); ``plan`` defaults to ``DEMO_PLAN``.
    The demo, the shipped model's planted-lesion tests and the soft count's calibration use it.
    """
    from skimage import data

    from lesioncount.face import analyse_face

    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    base = data.astronaut()
    image = cv2.resize(base, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    # A little sensor grain so the enlarged photo is not unnaturally smooth.
    image = np.clip(image + rng.normal(0, 2.0, image.shape), 0, 255).astype(np.uint8)
    face = analyse_face(image)
    if face.box is None:
        raise RuntimeError("the demo face was not found: the face models in models/face/ are missing")
    skin = cv2.erode(face.skin.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    # Plant only well inside the face box (below the hairline, above the jaw): the colour-based skin
    # mask also takes in this portrait's fair fringe, and acne on hair would make a confusing demo.
    x, y, w, h = face.box
    inner = np.zeros_like(skin)
    inner[y + int(0.22 * h) : y + int(0.98 * h), x + int(0.1 * w) : x + int(0.9 * w)] = True
    skin &= inner
    # Lesion sizes in RADIUS_PX are at the model's working scale (a face about 500 px high).
    scale = (face.height_px or face.box[3]) / 500.0
    return plant(image, plan or DEMO_PLAN, rng, allowed=skin, scale=scale, min_gap=3.0)
