"""Training samples: real ACNE04 crops with synthetic scars and marks planted on their skin, augmented.

A sample is ``(image CHW float32 normalised, heatmap, log_size, size_weight)``; see ``targets.py``.
Synthetic-only mode draws skin-like backgrounds so tiny runs (tests) need no data.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from lesioncount import synth  # noqa: E402
from lesioncount.data import DEFAULT_CLASS_MAP, read_coco, read_voc_file, source_id_from_name, split_half  # noqa: E402
from lesioncount.train.targets import make_targets  # noqa: E402
from lesioncount.types import CLASSES  # noqa: E402

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Item:
    """One labelled photo: its path and lesions as ``(x, y, w, h, class_index)``."""

    path: str
    source_id: str
    lesions: tuple[tuple[float, float, float, float, int], ...]


class TrainingDataError(ValueError):
    """The training data cannot be used (no labelled photos, nothing on one side of the split)."""


def load_items(data_dir: str | os.PathLike[str], class_map: dict[str, str] | None = None) -> list[Item]:
    """Every VOC ``.xml`` with its ``.jpg`` in ``data_dir``; lesions mapped to ``CLASSES`` indices."""
    cmap = {**DEFAULT_CLASS_MAP, **(class_map or {})}
    items = []
    for xml in sorted(Path(data_dir).glob("*.xml")):
        ann = read_voc_file(xml, cmap)
        jpg = xml.with_name(ann.file_name) if (xml.parent / ann.file_name).is_file() else xml.with_suffix(".jpg")
        lesions = tuple(
            (les.x, les.y, les.bbox[2], les.bbox[3], CLASSES.index(les.cls))
            for les in ann.lesions
            if les.bbox is not None and les.cls in CLASSES
        )
        items.append(Item(str(jpg), source_id_from_name(jpg.name), lesions))
    if not items:
        where = Path(data_dir)
        what = "no such folder" if not where.is_dir() else "no Pascal VOC .xml labels beside its photos"
        raise TrainingDataError(f"{where}: {what}, so nothing to train on")
    return items


def load_point_items(coco_path: str | os.PathLike[str], half: int = 0, cls: str = "inflammatory") -> list[Item]:
    """The photos of a COCO point-label file (photos beside it) as training items, every label as ``cls``
    (a ``2r x 2r`` box per point); with ``half`` 1 or 2 only that fixed half of the source faces."""
    p = Path(coco_path)
    doc = json.loads(p.read_text(encoding="utf-8"))
    names = {str(c["name"]).strip().lower(): cls for c in doc.get("categories", []) if isinstance(c, dict)}
    items = []
    for ann in read_coco(p, names):
        if half and split_half(ann.file_name) != half:
            continue
        lesions = tuple(
            (les.x, les.y, 2 * les.radius, 2 * les.radius, CLASSES.index(cls)) for les in ann.lesions if les.radius > 0
        )
        items.append(Item(str(p.parent / ann.file_name), source_id_from_name(ann.file_name), lesions))
    return items


def split_by_source(items: list[Item], val_fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Split so that no source face is in both parts (stable hash of the source id)."""

    def is_val(item: Item) -> bool:
        return (zlib.crc32(f"{seed}:{item.source_id}".encode()) % 10_000) < val_fraction * 10_000

    return [i for i in items if not is_val(i)], [i for i in items if is_val(i)]


def augmentation(crop_px: int) -> A.Compose:
    """Geometry, white balance and colour, blur, JPEG and noise (keypoints follow the geometry)."""
    return A.Compose(
        [
            A.Affine(scale=(0.75, 1.33), rotate=(-15, 15), border_mode=cv2.BORDER_REFLECT_101, p=0.8),
            A.HorizontalFlip(p=0.5),
            A.PadIfNeeded(crop_px, crop_px, border_mode=cv2.BORDER_REFLECT_101),
            A.RandomCrop(crop_px, crop_px),
            A.PlanckianJitter(p=0.3),
            # Exposure of +-1 stop: a linear-light gain of 2**+-1 is about x0.73-1.37 on gamma-encoded pixels.
            A.ColorJitter(brightness=(0.65, 1.45), contrast=0.25, saturation=0.2, hue=0.03, p=0.8),
            A.RandomGamma(gamma_limit=(80, 125), p=0.3),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 5))], p=0.15),
            A.ImageCompression(quality_range=(50, 95), p=0.3),
            A.GaussNoise(std_range=(0.01, 0.04), p=0.2),
        ],
        keypoint_params=A.KeypointParams(format="xys", label_fields=["cls", "aspect"], remove_invisible=True),
        seed=None,
    )


def synthetic_skin(hw: tuple[int, int], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """A skin-coloured background with pores and low-frequency shading (no real face needed)."""
    h, w = hw
    base = np.array([rng.uniform(170, 235), rng.uniform(120, 180), rng.uniform(95, 150)], np.float32)
    low = cv2.resize(rng.normal(0, 1, (max(2, h // 64), max(2, w // 64))).astype(np.float32), (w, h))
    fine = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.0)
    img = base * (1 + 0.08 * low[..., None]) + 6 * fine[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


class LesionDataset(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Augmented training crops.

    Args:
        items: labelled photos (ignored when ``synthetic_only``).
        crop_px: crop side.
        stride: model output stride.
        length: samples per epoch.
        seed: base seed; sample i of epoch e is reproducible.
        scar_prob, mark_prob, synth_acne_prob: chances of planting each kind.
        synthetic_only: draw backgrounds instead of reading photos.
    """

    def __init__(
        self,
        items: list[Item],
        crop_px: int,
        stride: int,
        length: int,
        seed: int,
        scar_prob: float = 0.5,
        mark_prob: float = 0.5,
        synth_acne_prob: float = 0.25,
        synthetic_only: bool = False,
    ) -> None:
        if not items and not synthetic_only:
            raise ValueError("no training photos: check data_dir or use synthetic_only")
        self.items, self.crop_px, self.stride, self.length, self.seed = items, crop_px, stride, length, seed
        self.scar_prob, self.mark_prob, self.synth_acne_prob = scar_prob, mark_prob, synth_acne_prob
        self.synthetic_only = synthetic_only
        self.aug = augmentation(crop_px)
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int) -> tuple[npt.NDArray[np.uint8], list[tuple[float, float, float, float, int]]]:
        """The un-augmented photo with planted lesions, and all its lesions."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.synthetic_only:
            image = synthetic_skin((self.crop_px + 64, self.crop_px + 64), rng)
            lesions: list[tuple[float, float, float, float, int]] = []
            acne_prob, scar_prob, mark_prob = 1.0, 0.7, 0.7
        else:
            item = self.items[int(rng.integers(len(self.items)))]
            bgr = cv2.imread(item.path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise OSError(f"cannot read training photo {item.path}")
            image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            lesions = list(item.lesions)
            acne_prob, scar_prob, mark_prob = self.synth_acne_prob, self.scar_prob, self.mark_prob
        avoid = [(x, y, max(w, h) / 2 + 4) for x, y, w, h, _ in lesions]
        allowed = None if self.synthetic_only else synth.skin_tone_mask(image)
        plan: dict[str, int] = {}
        if rng.random() < acne_prob:
            for k in rng.choice(synth.ACNE_KINDS, size=int(rng.integers(1, 7))):
                plan[str(k)] = plan.get(str(k), 0) + 1
        if rng.random() < scar_prob:
            for k in rng.choice(synth.SCAR_KINDS, size=int(rng.integers(1, 7))):
                plan[str(k)] = plan.get(str(k), 0) + 1
        if rng.random() < mark_prob:
            for k in rng.choice(synth.MARK_KINDS, size=int(rng.integers(1, 6))):
                plan[str(k)] = plan.get(str(k), 0) + 1
        if plan:
            image, planted = synth.plant(image, plan, rng, allowed=allowed, avoid=avoid)
            for p in planted:
                if p.cls is not None:
                    lesions.append((p.x, p.y, p.bbox[2], p.bbox[3], CLASSES.index(p.cls)))
        return image, lesions

    def augmented(self, index: int) -> tuple[npt.NDArray[np.uint8], list[tuple[float, float, float, float, int]]]:
        """Sample ``index`` augmented and cropped: the crop and its lesions as ``(x, y, w, h, class_index)``."""
        image, lesions = self.sample(index)
        ih, iw = image.shape[:2]
        # Centres on the very edge (boxes cut by the export's crops) must lie inside for albumentations.
        kps = [
            (min(max(x, 0.0), iw - 0.01), min(max(y, 0.0), ih - 0.01), float(np.sqrt(max(w, 1) * max(h, 1))))
            for x, y, w, h, _ in lesions
        ]
        out = self.aug(
            image=image,
            keypoints=np.array(kps, np.float32).reshape(-1, 3),
            cls=[k for *_, k in lesions],
            aspect=[max(w, 1) / max(h, 1) for _, _, w, h, _ in lesions],
        )
        centres = []
        for (x, y, s), k, a in zip(out["keypoints"], out["cls"], out["aspect"], strict=True):
            w, h = s * np.sqrt(a), s / np.sqrt(a)
            centres.append((float(x), float(y), float(w), float(h), int(k)))
        return out["image"], centres

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        image, centres = self.augmented(index)
        heat, log_size, weight = make_targets((self.crop_px, self.crop_px), centres, len(CLASSES), self.stride)
        return (
            torch.from_numpy(normalise(image)),
            torch.from_numpy(heat),
            torch.from_numpy(log_size),
            torch.from_numpy(weight),
        )


def normalise(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """HxWx3 uint8 RGB -> 3xHxW float32, scaled to [0, 1] then standardised with ``MEAN``/``STD``."""
    x = (image.astype(np.float32) / np.float32(255.0) - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)
