"""The value types every module shares: lesions, faces, model contracts and count results.

All are frozen dataclasses; ``to_dict``/``from_dict`` give the JSON schema v1 form
(``lesioncount/schema/count_result.v1.json``). Coordinates are photo pixels as a viewer shows
the photo (after EXIF orientation), origin top-left, x to the right, y down.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = "1.0"

#: Lesion classes the counting core reports, in model-channel order.
CLASSES: tuple[str, ...] = ("inflammatory", "comedone", "scar")
#: Classes that make up ``total_acne`` (active acne; scars are counted apart).
ACNE_CLASSES: tuple[str, ...] = ("inflammatory", "comedone")
#: What a label may be mapped to (a class map's targets): a class, or ``lesion`` for a label with no type.
LABEL_CLASSES: tuple[str, ...] = (*CLASSES, "lesion")


def bad_class_map_targets(class_map: dict[str, str]) -> str | None:
    """A message naming the class-map entries whose target is no label class, or None when all are."""
    bad = [f"{k}={v}" for k, v in class_map.items() if v not in LABEL_CLASSES]
    if not bad:
        return None
    return f"class map {', '.join(bad)}: a label maps to one of {', '.join(LABEL_CLASSES)}"


#: Facial regions. Left and right are the patient's own (a frontal photo shows the left cheek on the image right).
#: The count of all acne lesions (inflammatory + comedone): a key of every ``counts`` block.
TOTAL_ACNE = "total_acne"
#: Every key of a ``counts`` block, in order: the classes, then the acne total.
COUNT_KEYS: tuple[str, ...] = (*CLASSES, TOTAL_ACNE)
REGIONS: tuple[str, ...] = ("forehead", "left_cheek", "right_cheek", "nose", "chin", "other")
#: Photo views a visit may hold.
VIEWS: tuple[str, ...] = ("front", "left", "right")


#: ONNX output name of a model's experts' acne heatmap (see ``ModelSpec.expert_threshold``).
EXPERT_OUTPUT = "experts"


@dataclass(frozen=True)
class Lesion:
    """One detected lesion.

    Attributes:
        cls: one of ``CLASSES``.
        x: centre column in photo pixels.
        y: centre row in photo pixels.
        area_px: estimated area in photo pixels (ellipse of the predicted box).
        bbox: ``(x, y, w, h)`` in photo pixels, top-left corner first.
        score: detection confidence in [0, 1].
        region: one of ``REGIONS``.
    """

    cls: str
    x: float
    y: float
    area_px: float
    bbox: tuple[float, float, float, float]
    score: float
    region: str = "other"

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.cls,
            "x": round(self.x, 2),
            "y": round(self.y, 2),
            "area_px": round(self.area_px, 1),
            "bbox": [round(v, 2) for v in self.bbox],
            "score": round(self.score, 4),
            "region": self.region,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Lesion:
        bx = d["bbox"]
        return cls(
            cls=d["class"],
            x=float(d["x"]),
            y=float(d["y"]),
            area_px=float(d["area_px"]),
            bbox=(float(bx[0]), float(bx[1]), float(bx[2]), float(bx[3])),
            score=float(d["score"]),
            region=d.get("region", "other"),
        )


@dataclass(frozen=True)
class ImageInfo:
    """The photo a result belongs to (width/height after EXIF orientation)."""

    path: str
    width: int
    height: int
    sha256: str


@dataclass(frozen=True)
class ModelInfo:
    """Which model produced a result, and at which operating point.

    Attributes:
        name, version, sha256: the model file.
        thresholds: the score threshold per class that the count used (None in results older than 0.1).
        count_softness: the softness of the acne count (see ``ModelSpec.count_softness``); None when every
            acne peak above its threshold was counted as one lesion.
    """

    name: str
    version: str
    sha256: str
    thresholds: dict[str, float] | None = None
    count_softness: float | None = None


@dataclass(frozen=True)
class FaceInfo:
    """Where the face is and how it was found.

    Attributes:
        found: whether a face was detected; when False, counting ran on the whole frame.
        box: ``(x, y, w, h)`` face box in photo pixels, or None.
        method: how the face was found (``face_detection_short_range``, ``mesh-whole-frame``,
            ``detector-keypoints``), ``skin-colour`` for skin without a face, or ``none``.
        view: best guess of the view: ``front``, ``left``, ``right`` or ``unknown``.
        skin_fraction: share of the frame counted as skin.
        scale: factor from photo pixels to the model's working pixels.
        view_confidence: 0.5 (on the front/lateral boundary) to 1.0; 0 when the view is unknown.
        yaw_deg, roll_deg, pitch_deg: head pose (yaw positive when the patient's left side faces the camera).
        height_px: face height (forehead top to chin) in photo pixels: the working scale's reference.
        landmarks: the 468 face-mesh landmarks ``[x, y]`` in photo pixels (MediaPipe's order), or None.
    """

    found: bool
    box: tuple[int, int, int, int] | None
    method: str
    view: str = "unknown"
    skin_fraction: float = 0.0
    scale: float = 1.0
    view_confidence: float = 0.0
    yaw_deg: float | None = None
    roll_deg: float | None = None
    pitch_deg: float | None = None
    height_px: float | None = None
    landmarks: tuple[tuple[float, float], ...] | None = None


@dataclass(frozen=True)
class ModelSpec:
    """The model's contract, read from the .onnx metadata (never hard-coded at inference).

    Attributes:
        name: model name.
        version: model version string.
        classes: heatmap channel names, in order.
        mean: per-channel RGB mean subtracted after scaling to [0, 1].
        std: per-channel RGB std divided after mean subtraction.
        output_stride: input pixels per output pixel.
        face_height_px: face-box height (working pixels) the model was trained at.
        thresholds: per-class score thresholds for a lesion peak.
        tile_px: preferred tile side in working pixels.
        tile_overlap_px: overlap between tiles in working pixels.
        training_data: one-line note on the data and its terms.
        input_multiple: input sides must be multiples of this (the stem stride times the U-Net's pooling).
        flip_average: the model runs on the photo and on its mirror image and the two outputs are averaged
            (test-time flip averaging); its thresholds were calibrated that way.
        heat_sigma: the class heatmaps are smoothed by a Gaussian of this sigma (output pixels) before
            peaks are picked, so that a peak does not cross its threshold with a sub-pixel shift of the
            photo; 0 for none. The thresholds were calibrated that way.
        count_softness: above 0, the acne count is soft: each acne peak scoring at least half its class
            threshold counts ``sigmoid((score - threshold) / count_softness)``, the chance that it is a
            lesion; the count is the rounded sum (the expected number of lesions), and the marks are that
            many of the strongest such peaks. A peak near the threshold then moves the count by a fraction
            when a re-take nudges its score, not by one. 0: a peak counts when it reaches its threshold.
        expert_threshold: above 0, the model has a second acne heatmap (ONNX output ``experts``) trained on
            dermatologists' point labels, which mark about twice as many lesions as the boxes behind the
            count; its peaks over this threshold are the expert-style marks (``CountResult.expert_marks``).
            They do not enter the count or the grades. 0: no such output is used.
    """

    name: str
    version: str
    classes: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output_stride: int
    face_height_px: float
    thresholds: dict[str, float]
    tile_px: int = 512
    tile_overlap_px: int = 64
    training_data: str = ""
    input_multiple: int = 16
    flip_average: bool = False
    heat_sigma: float = 0.0
    count_softness: float = 0.0
    expert_threshold: float = 0.0

    #: Metadata keys every shipped model must carry.
    REQUIRED_KEYS = (
        "lesioncount.name",
        "lesioncount.version",
        "lesioncount.classes",
        "lesioncount.mean",
        "lesioncount.std",
        "lesioncount.output_stride",
        "lesioncount.face_height_px",
        "lesioncount.thresholds",
        "lesioncount.tile_px",
        "lesioncount.tile_overlap_px",
        "lesioncount.training_data",
    )

    def to_metadata(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` form: every value a JSON string."""
        import json

        return {
            "lesioncount.name": self.name,
            "lesioncount.version": self.version,
            "lesioncount.classes": json.dumps(list(self.classes)),
            "lesioncount.mean": json.dumps(list(self.mean)),
            "lesioncount.std": json.dumps(list(self.std)),
            "lesioncount.output_stride": str(self.output_stride),
            "lesioncount.face_height_px": str(self.face_height_px),
            "lesioncount.thresholds": json.dumps(self.thresholds),
            "lesioncount.tile_px": str(self.tile_px),
            "lesioncount.tile_overlap_px": str(self.tile_overlap_px),
            "lesioncount.training_data": self.training_data,
            "lesioncount.input_multiple": str(self.input_multiple),
            "lesioncount.flip_average": json.dumps(self.flip_average),
            "lesioncount.heat_sigma": str(self.heat_sigma),
            "lesioncount.count_softness": str(self.count_softness),
            "lesioncount.expert_threshold": str(self.expert_threshold),
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> ModelSpec:
        """Build from ONNX metadata; raises ValueError naming any missing key."""
        import json

        missing = [k for k in cls.REQUIRED_KEYS if k not in meta]
        if missing:
            raise ValueError(f"model metadata lacks {', '.join(missing)}; export the model with `lesioncount export`")
        try:
            spec = cls(
                name=meta["lesioncount.name"],
                version=meta["lesioncount.version"],
                classes=tuple(json.loads(meta["lesioncount.classes"])),
                mean=tuple(float(v) for v in json.loads(meta["lesioncount.mean"])),  # type: ignore[arg-type]
                std=tuple(float(v) for v in json.loads(meta["lesioncount.std"])),  # type: ignore[arg-type]
                output_stride=int(meta["lesioncount.output_stride"]),
                face_height_px=float(meta["lesioncount.face_height_px"]),
                thresholds={k: float(v) for k, v in json.loads(meta["lesioncount.thresholds"]).items()},
                tile_px=int(meta["lesioncount.tile_px"]),
                tile_overlap_px=int(meta["lesioncount.tile_overlap_px"]),
                training_data=meta["lesioncount.training_data"],
                input_multiple=int(meta.get("lesioncount.input_multiple", "16")),
                flip_average=bool(json.loads(meta.get("lesioncount.flip_average", "false"))),
                heat_sigma=float(meta.get("lesioncount.heat_sigma", "0")),
                count_softness=float(meta.get("lesioncount.count_softness", "0")),
                expert_threshold=float(meta.get("lesioncount.expert_threshold", "0")),
            )
        except (ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"model metadata is malformed ({e}); export the model with `lesioncount export`") from e
        spec.check()
        return spec

    def check(self) -> None:
        """Raise ValueError naming the first value of the contract that cannot be right."""
        problems = []
        if not self.classes or not all(isinstance(c, str) and c for c in self.classes):
            problems.append(f"classes must be non-empty names, got {self.classes!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append(f"mean and std need 3 values each, std > 0; got {self.mean}, {self.std}")
        if self.output_stride not in (1, 2, 4, 8):
            problems.append(f"output_stride must be 1, 2, 4 or 8, got {self.output_stride}")
        if self.input_multiple < 1 or self.input_multiple % self.output_stride:
            problems.append(f"input_multiple {self.input_multiple} must be a multiple of the stride")
        if not self.face_height_px > 0:
            problems.append(f"face_height_px must be positive, got {self.face_height_px}")
        if set(self.thresholds) != set(self.classes) or not all(0 < t < 1 for t in self.thresholds.values()):
            problems.append(f"thresholds must give each class a value in (0, 1), got {self.thresholds}")
        if self.tile_px % self.input_multiple or self.tile_overlap_px % self.input_multiple:
            problems.append(f"tile_px and tile_overlap_px must be multiples of {self.input_multiple}")
        if not 0 <= self.tile_overlap_px < self.tile_px:
            problems.append(f"tile_overlap_px ({self.tile_overlap_px}) must be under tile_px ({self.tile_px})")
        if not 0 <= self.heat_sigma <= 3:
            problems.append(f"heat_sigma must be between 0 and 3 output pixels, got {self.heat_sigma}")
        if not (0 <= self.count_softness <= 0.2 and math.isfinite(self.count_softness)):
            problems.append(f"count_softness must be 0 (off) or a score spread up to 0.2, got {self.count_softness}")
        if not (0 <= self.expert_threshold < 1 and math.isfinite(self.expert_threshold)):
            problems.append(f"expert_threshold must be 0 (off) or a score under 1, got {self.expert_threshold}")
        if problems:
            raise ValueError("model contract: " + "; ".join(problems))


#: A peak scoring at least this share of its class threshold (but under it) is kept as near the threshold.
NEAR_THRESHOLD_FRACTION = 0.5


@dataclass(frozen=True)
class CountResult:
    """Everything ``count_lesions`` finds in one photo (schema v1)."""

    image: ImageInfo
    model: ModelInfo
    face: FaceInfo
    lesions: tuple[Lesion, ...]
    counts: dict[str, int]
    counts_by_region: dict[str, dict[str, int]]
    grades: dict[str, Any]
    warnings: tuple[str, ...] = ()
    timing_s: dict[str, float] = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION
    #: Peaks not counted that come close: with a hard count, those scoring at least
    #: ``NEAR_THRESHOLD_FRACTION`` of their class threshold but under it; with a soft count, the acne peaks it
    #: did not mark, down to that fraction of the threshold or of the weakest mark. Visit comparison uses them
    #: as hysteresis (a lesion just under the threshold in one photo is not called resolved or new).
    near_threshold: tuple[Lesion, ...] = ()
    #: The expected number of acne lesions before rounding, with a soft count (``ModelSpec.count_softness``);
    #: None otherwise.
    acne_expected: float | None = None
    #: With a model that has an experts' heatmap (``ModelSpec.expert_threshold``): where dermatologists
    #: would mark acne lesions (class ``acne``), about twice as many as ``lesions`` holds. They are not
    #: counted in ``counts`` or graded. Empty otherwise.
    expert_marks: tuple[Lesion, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        face = asdict(self.face)
        face["box"] = list(self.face.box) if self.face.box is not None else None
        face["landmarks"] = [list(p) for p in self.face.landmarks] if self.face.landmarks is not None else None
        return {
            "schema_version": self.schema_version,
            "image": asdict(self.image),
            "model": asdict(self.model),
            "face": face,
            "lesions": [lesion.to_dict() for lesion in self.lesions],
            "counts": dict(self.counts),
            "counts_by_region": {r: dict(c) for r, c in self.counts_by_region.items()},
            "grades": self.grades,
            "quality": {"warnings": list(self.warnings)},
            "timing_s": {k: round(v, 4) for k, v in self.timing_s.items()},
            "near_threshold": [lesion.to_dict() for lesion in self.near_threshold],
            "acne_expected": None if self.acne_expected is None else round(self.acne_expected, 3),
            "expert_marks": [lesion.to_dict() for lesion in self.expert_marks],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CountResult:
        face = dict(d["face"])
        face["box"] = tuple(face["box"]) if face.get("box") is not None else None
        if face.get("landmarks") is not None:
            face["landmarks"] = tuple((float(x), float(y)) for x, y in face["landmarks"])
        return cls(
            schema_version=d["schema_version"],
            image=ImageInfo(**d["image"]),
            model=ModelInfo(**d["model"]),
            face=FaceInfo(**face),
            lesions=tuple(Lesion.from_dict(x) for x in d["lesions"]),
            counts={k: int(v) for k, v in d["counts"].items()},
            counts_by_region={r: {k: int(v) for k, v in c.items()} for r, c in d["counts_by_region"].items()},
            grades=d["grades"],
            warnings=tuple(d.get("quality", {}).get("warnings", [])),
            timing_s=dict(d.get("timing_s", {})),
            near_threshold=tuple(Lesion.from_dict(x) for x in d.get("near_threshold", [])),
            acne_expected=d.get("acne_expected"),
            expert_marks=tuple(Lesion.from_dict(x) for x in d.get("expert_marks", [])),
        )
