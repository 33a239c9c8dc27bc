"""Dataset readers and writers: Pascal VOC folders, COCO JSON (boxes, polygons, point + radius), YOLO txt.

Every reader returns ``list[ImageAnnotation]``: one per photo, lesions as ``RefLesion`` (centre, optional
box, radius). Source class names are mapped to our classes by a ``ClassMap`` (from config); a name the
map does not know raises ``AnnotationError`` unless ``unknown="skip"``.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lesioncount.io import IMAGE_EXTENSIONS, write_json


class AnnotationError(ValueError):
    """A label file is malformed; the message names the file and what is wrong."""


#: VOC/ACNE04 names -> our classes. The ACNE04 class names are noisy; see data/README.md.
DEFAULT_CLASS_MAP: dict[str, str] = {
    "papules": "inflammatory",
    "pustules": "inflammatory",
    "nodules and cysts": "inflammatory",
    "whitehead and blackhead": "comedone",
    "acne": "lesion",  # expert points: one class, no type
    "inflammatory": "inflammatory",
    "comedone": "comedone",
    "scar": "scar",
    "lesion": "lesion",
}


@dataclass(frozen=True)
class RefLesion:
    """A labelled lesion.

    Attributes:
        cls: our class name (``inflammatory``, ``comedone``, ``scar``) or ``lesion`` when the source has no type.
        x: centre column in pixels.
        y: centre row in pixels.
        bbox: ``(x, y, w, h)`` or None for a bare point.
        radius: radius in pixels for point labels (half the box's smaller side for boxes).
    """

    cls: str
    x: float
    y: float
    bbox: tuple[float, float, float, float] | None = None
    radius: float = 0.0


@dataclass(frozen=True)
class ImageAnnotation:
    """All labels of one photo. ``file_name`` is relative to the dataset's image folder."""

    file_name: str
    width: int
    height: int
    lesions: tuple[RefLesion, ...]
    attributes: Mapping[str, object] = field(default_factory=dict)


def map_class(name: str, class_map: Mapping[str, str], *, where: str) -> str:
    key = name.strip().lower()
    if key not in class_map:
        known = ", ".join(sorted(class_map))
        raise AnnotationError(f"{where}: unknown class {name!r}; add it to the class map (known: {known})")
    return class_map[key]


def _box_lesion(cls: str, x0: float, y0: float, w: float, h: float) -> RefLesion:
    return RefLesion(cls=cls, x=x0 + w / 2, y=y0 + h / 2, bbox=(x0, y0, w, h), radius=min(w, h) / 2)


# ---------------------------------------------------------------- Pascal VOC


def read_voc_file(
    path: str | os.PathLike[str],
    class_map: Mapping[str, str] = DEFAULT_CLASS_MAP,
    unknown: Literal["error", "skip"] = "error",
) -> ImageAnnotation:
    """Read one Pascal VOC XML file."""
    p = Path(path)
    try:
        root = ET.parse(p).getroot()
    except (ET.ParseError, OSError) as e:
        raise AnnotationError(f"{p}: not valid XML ({e})") from e
    if root.tag != "annotation":
        raise AnnotationError(f"{p}: root element is <{root.tag}>, expected <annotation>")
    fname = (root.findtext("filename") or p.with_suffix(".jpg").name).strip()
    try:
        width = int(float(root.findtext("size/width") or 0))
        height = int(float(root.findtext("size/height") or 0))
    except ValueError as e:
        raise AnnotationError(f"{p}: <size> is not numeric") from e
    lesions = []
    for i, obj in enumerate(root.iter("object")):
        name = obj.findtext("name")
        if name is None:
            raise AnnotationError(f"{p}: object {i} has no <name>")
        if unknown == "skip" and name.strip().lower() not in class_map:
            continue
        cls = map_class(name, class_map, where=f"{p} object {i}")
        bb = obj.find("bndbox")
        if bb is None:
            raise AnnotationError(f"{p}: object {i} ({name}) has no <bndbox>")
        try:
            x0, y0, x1, y1 = (float(bb.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as e:
            raise AnnotationError(f"{p}: object {i} has a non-numeric box") from e
        if not (x1 >= x0 and y1 >= y0):
            raise AnnotationError(f"{p}: object {i} box ({x0},{y0},{x1},{y1}) is inverted (max < min)")
        if x1 == x0 or y1 == y0:
            continue  # zero-area boxes appear where augmentation cropped a lesion away: nothing to count
        lesions.append(_box_lesion(cls, x0, y0, x1 - x0, y1 - y0))
    return ImageAnnotation(fname, width, height, tuple(lesions))


def read_voc_dir(
    folder: str | os.PathLike[str],
    class_map: Mapping[str, str] = DEFAULT_CLASS_MAP,
    unknown: Literal["error", "skip"] = "error",
) -> list[ImageAnnotation]:
    """Read every ``*.xml`` in a folder (not recursive), sorted by name."""
    return [read_voc_file(p, class_map, unknown) for p in voc_files(folder, allow_empty=True)]


def voc_files(folder: str | os.PathLike[str], *, limit: int = 0, allow_empty: bool = False) -> list[Path]:
    """The ``*.xml`` files of a folder (not recursive), sorted by name, at most ``limit`` (0: all).

    Raises:
        AnnotationError: ``folder`` is not a folder, or (unless ``allow_empty``) holds no ``.xml`` file.
    """
    d = Path(folder)
    if not d.is_dir():
        raise AnnotationError(f"{d}: not a folder")
    files = sorted(d.glob("*.xml"))[: limit or None]
    if not files and not allow_empty:
        raise AnnotationError(f"{d}: no VOC .xml files")
    return files


def write_voc_file(path: str | os.PathLike[str], ann: ImageAnnotation) -> None:
    """Write one annotation as Pascal VOC XML (point labels become their circle's box)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = ann.file_name
    size = ET.SubElement(root, "size")
    for k, n in (("width", ann.width), ("height", ann.height), ("depth", 3)):
        ET.SubElement(size, k).text = str(n)
    for les in ann.lesions:
        x0, y0, w, h = les.bbox or (les.x - les.radius, les.y - les.radius, 2 * les.radius, 2 * les.radius)
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = les.cls
        bb = ET.SubElement(obj, "bndbox")
        for k, v in (("xmin", x0), ("ymin", y0), ("xmax", x0 + w), ("ymax", y0 + h)):
            ET.SubElement(bb, k).text = f"{v:g}"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="unicode")


# ---------------------------------------------------------------- COCO


def read_coco(
    path: str | os.PathLike[str],
    class_map: Mapping[str, str] = DEFAULT_CLASS_MAP,
    unknown: Literal["error", "skip"] = "error",
) -> list[ImageAnnotation]:
    """Read COCO JSON with boxes, polygons, point + radius lesions (``point: [x, y]``, ``radius``) or COCO
    keypoints (one visible keypoint per lesion, as CVAT's "COCO Keypoints 1.0" export writes them; the
    radius is half the annotation's box when it has one).

    Extra per-image keys (such as ``hayashi_grade``) are kept in ``attributes``.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{p}: not valid JSON ({e})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise AnnotationError(f"{p}: COCO JSON needs an 'images' list")
    anns = doc.get("annotations", [])
    cats = {c["id"]: c["name"] for c in doc.get("categories", []) if isinstance(c, dict) and "id" in c}
    by_image: dict[object, list[RefLesion]] = {}
    for i, a in enumerate(anns):
        where = f"{p} annotation {i}"
        if not isinstance(a, dict) or "image_id" not in a or "category_id" not in a:
            raise AnnotationError(f"{where}: needs image_id and category_id")
        if a["category_id"] not in cats:
            raise AnnotationError(f"{where}: category_id {a['category_id']} is not in 'categories'")
        name = cats[a["category_id"]]
        if unknown == "skip" and name.strip().lower() not in class_map:
            continue
        cls = map_class(name, class_map, where=where)
        by_image.setdefault(a["image_id"], []).append(_coco_lesion(a, cls, where))
    out = []
    for im in doc["images"]:
        if not isinstance(im, dict) or not {"id", "file_name"} <= im.keys():
            raise AnnotationError(f"{p}: every image needs id and file_name")
        extra = {k: v for k, v in im.items() if k not in ("id", "file_name", "width", "height")}
        out.append(
            ImageAnnotation(
                im["file_name"],
                int(im.get("width", 0)),
                int(im.get("height", 0)),
                tuple(by_image.get(im["id"], [])),
                extra,
            )
        )
    return out


def _coco_lesion(a: dict[str, object], cls: str, where: str) -> RefLesion:
    try:
        if "point" in a:
            x, y = (float(v) for v in a["point"])  # type: ignore[attr-defined]
            r = float(a.get("radius", 0.0))  # type: ignore[arg-type]
            # A point label: any bbox beside it is the circle's box (for viewers), not a drawn box, so it is
            # not used as one (no box metrics against points).
            return RefLesion(cls, x, y, None, r)
        if a.get("keypoints"):
            kp = [float(v) for v in a["keypoints"]]  # type: ignore[attr-defined]
            seen = [(kp[i], kp[i + 1]) for i in range(0, len(kp) - 2, 3) if kp[i + 2] > 0]
            if len(seen) != 1:
                raise AnnotationError(f"{where}: a lesion needs exactly one visible keypoint, found {len(seen)}")
            box = [float(v) for v in a.get("bbox") or (0, 0, 0, 0)]  # type: ignore[attr-defined]
            return RefLesion(cls, seen[0][0], seen[0][1], None, max(box[2], box[3]) / 2 if len(box) == 4 else 0.0)
        if "bbox" in a:
            x0, y0, w, h = (float(v) for v in a["bbox"])  # type: ignore[attr-defined]
            if w <= 0 or h <= 0:
                raise AnnotationError(f"{where}: bbox has non-positive size")
            return _box_lesion(cls, x0, y0, w, h)
        seg = a.get("segmentation")
        if isinstance(seg, list) and seg and isinstance(seg[0], list) and len(seg[0]) >= 6:
            xs = [float(v) for v in seg[0][0::2]]
            ys = [float(v) for v in seg[0][1::2]]
            return _box_lesion(cls, min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
    except (TypeError, ValueError) as e:
        raise AnnotationError(f"{where}: malformed geometry ({e})") from e
    raise AnnotationError(f"{where}: needs 'point', 'bbox' or a polygon 'segmentation'")


def write_coco(
    path: str | os.PathLike[str], annotations: Iterable[ImageAnnotation], *, categories: Mapping[str, int] | None = None
) -> None:
    """Write annotations as COCO JSON: boxes as ``bbox``, point labels as ``point`` + ``radius`` (and their circle's
    ``bbox``). ``categories`` fixes the category ids (name -> id); others get the next free ids."""
    images: list[dict[str, object]] = []
    anns: list[dict[str, object]] = []
    cat_ids: dict[str, int] = dict(categories or {})
    for img_id, ann in enumerate(annotations, start=1):
        images.append(
            {"id": img_id, "file_name": ann.file_name, "width": ann.width, "height": ann.height, **dict(ann.attributes)}
        )
        for les in ann.lesions:
            cid = cat_ids.setdefault(les.cls, max(cat_ids.values(), default=0) + 1)
            bbox = les.bbox or (les.x - les.radius, les.y - les.radius, 2 * les.radius, 2 * les.radius)
            # A point label keeps its point and radius (its bbox is the circle's, for viewers); a box
            # label is a plain COCO box, so that a reader never takes one for the other.
            point = {"point": [les.x, les.y], "radius": les.radius} if les.bbox is None else {}
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": cid,
                    **point,
                    "bbox": list(bbox),
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
    cats = [{"id": i, "name": n} for n, i in cat_ids.items()]
    write_json(path, {"images": images, "annotations": anns, "categories": cats})


# ---------------------------------------------------------------- YOLO


def read_yolo_dir(
    folder: str | os.PathLike[str],
    class_names: list[str],
    class_map: Mapping[str, str] = DEFAULT_CLASS_MAP,
    image_folder: str | os.PathLike[str] | None = None,
) -> list[ImageAnnotation]:
    """Read YOLO ``.txt`` labels (``cls cx cy w h`` normalised); image sizes come from the photos.

    Args:
        folder: folder of ``.txt`` files.
        class_names: the YOLO class index -> source name list (``data.yaml`` ``names``).
        class_map: source name -> our class.
        image_folder: where the photos are (defaults to ``folder``), to read their sizes.
    """
    from PIL import Image

    d, imgs = Path(folder), Path(image_folder or folder)
    out = []
    for txt in sorted(d.glob("*.txt")):
        photo = next((imgs / (txt.stem + ext) for ext in IMAGE_EXTENSIONS if (imgs / (txt.stem + ext)).is_file()), None)
        if photo is None:
            raise AnnotationError(f"{txt}: no photo named {txt.stem}.* in {imgs}")
        with Image.open(photo) as im:
            w, h = im.size
        lesions = []
        for ln, line in enumerate(txt.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 5:
                raise AnnotationError(f"{txt}:{ln}: expected 'class cx cy w h', got {line!r}")
            try:
                k, cx, cy, bw, bh = int(parts[0]), *(float(v) for v in parts[1:])
            except ValueError as e:
                raise AnnotationError(f"{txt}:{ln}: non-numeric field in {line!r}") from e
            if not 0 <= k < len(class_names):
                raise AnnotationError(f"{txt}:{ln}: class index {k} outside 0..{len(class_names) - 1}")
            cls = map_class(class_names[k], class_map, where=f"{txt}:{ln}")
            lesions.append(_box_lesion(cls, (cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h))
        out.append(ImageAnnotation(photo.name, w, h, tuple(lesions)))
    return out


def write_yolo_dir(
    folder: str | os.PathLike[str], annotations: Iterable[ImageAnnotation], class_names: list[str]
) -> None:
    """Write one YOLO ``.txt`` per photo (``class_names`` gives the index of each of our classes)."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    for ann in annotations:
        lines = []
        for les in ann.lesions:
            x0, y0, w, h = les.bbox or (les.x - les.radius, les.y - les.radius, 2 * les.radius, 2 * les.radius)
            k = class_names.index(les.cls)
            lines.append(
                f"{k} {les.x / ann.width:.6f} {les.y / ann.height:.6f} {w / ann.width:.6f} {h / ann.height:.6f}"
            )
        (d / (Path(ann.file_name).stem + ".txt")).write_text("\n".join(lines) + ("\n" if lines else ""))


def hayashi_grade_from_name(file_name: str) -> int | None:
    """ACNE04 file names start ``levleK_``: K is the photo's Hayashi grade (0-3)."""
    stem = Path(file_name).name
    if stem.startswith("levle") and len(stem) > 5 and stem[5].isdigit():
        return int(stem[5])
    return None


def split_half(file_name: str) -> int:
    """1 or 2: the fixed half of a labelled set that a photo's source face falls in (a stable hash of its
    source id), to train on one half of a set (ACNE04 valid's expert points) and report on the other."""
    return 1 + zlib.crc32(f"half:{source_id_from_name(file_name)}".encode()) % 2


def source_id_from_name(file_name: str) -> str:
    """ACNE04 source photo id (``levleK_N``) from a Roboflow export name; the stem otherwise."""
    stem = Path(file_name).name
    return stem.split("_jpg")[0] if "_jpg" in stem else Path(stem).stem


#: A Roboflow export's file name: the source photo's stem, its extension, ``.rf.`` and a hash.
_ROBOFLOW_NAME = re.compile(r"^(?P<stem>.+)_(?:jpe?g|png|bmp|webp|tiff?)\.rf\.[0-9a-f]+\.\w+$", re.IGNORECASE)


def source_face(file_name: str) -> str:
    """The photo a labelled file was made from: a Roboflow export's copies of one photo (``x_jpg.rf.<hash>.jpg``,
    often augmented) share it, folder included; any other file is its own. Bootstrap intervals resample these,
    so that three copies of a face count as one face."""
    path = Path(file_name)
    m = _ROBOFLOW_NAME.match(path.name)
    return (path.parent / m["stem"]).as_posix() if m else path.as_posix()
