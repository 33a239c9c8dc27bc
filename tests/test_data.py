from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lesioncount.data import (
    AnnotationError,
    ImageAnnotation,
    RefLesion,
    hayashi_grade_from_name,
    read_coco,
    read_voc_dir,
    read_voc_file,
    read_yolo_dir,
    source_id_from_name,
    write_coco,
    write_voc_file,
    write_yolo_dir,
)

VOC = """<annotation><filename>levle2_7_jpg.rf.abc.jpg</filename><size><width>640</width><height>480</height></size>
<object><name>papules</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object>
<object><name>whitehead and blackhead</name>
<bndbox><xmin>100</xmin><ymin>100</ymin><xmax>104</xmax><ymax>106</ymax></bndbox></object>
<object><name>nodules and cysts</name><bndbox><xmin>5</xmin><ymin>1</ymin><xmax>9</xmax><ymax>1</ymax></bndbox></object>
</annotation>"""


def test_voc_reader_maps_classes_and_centres(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text(VOC)
    ann = read_voc_file(tmp_path / "a.xml")
    assert (ann.file_name, ann.width, ann.height) == ("levle2_7_jpg.rf.abc.jpg", 640, 480)
    assert [(les.cls, les.x, les.y) for les in ann.lesions] == [("inflammatory", 20, 25), ("comedone", 102, 103)]
    assert ann.lesions[0].bbox == (10, 20, 20, 10) and ann.lesions[0].radius == 5  # zero-height box dropped
    assert len(read_voc_dir(tmp_path)) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<annotation><object><name>papules</name>", "not valid XML"),
        ("<root/>", "expected <annotation>"),
        ("<annotation><object><name>zits</name><bndbox/></object></annotation>", "unknown class 'zits'"),
        ("<annotation><object><name>papules</name></object></annotation>", "no <bndbox>"),
        (
            "<annotation><object><name>papules</name><bndbox><xmin>9</xmin><ymin>1</ymin><xmax>2</xmax>"
            "<ymax>5</ymax></bndbox></object></annotation>",
            "inverted",
        ),
        (
            "<annotation><object><name>papules</name><bndbox><xmin>a</xmin></bndbox></object></annotation>",
            "non-numeric",
        ),
    ],
)
def test_voc_malformed(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.xml").write_text(text)
    with pytest.raises(AnnotationError, match=message) as e:
        read_voc_file(tmp_path / "bad.xml")
    assert "bad.xml" in str(e.value)


def test_coco_points_boxes_polygons(tmp_path: Path) -> None:
    doc = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 64, "height": 64, "hayashi_grade": 2},
            {"id": 2, "file_name": "b.jpg", "width": 64, "height": 64},
        ],
        "categories": [{"id": 1, "name": "acne"}, {"id": 2, "name": "papules"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "point": [10.5, 20.0], "radius": 4.0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 4]},
            {"id": 3, "image_id": 1, "category_id": 2, "segmentation": [[0, 0, 8, 0, 8, 6, 0, 6]]},
        ],
    }
    (tmp_path / "c.json").write_text(json.dumps(doc))
    a, b = read_coco(tmp_path / "c.json")
    assert a.attributes["hayashi_grade"] == 2 and b.lesions == ()
    assert a.lesions[0] == RefLesion("lesion", 10.5, 20.0, None, 4.0)  # a point label: no box
    assert (a.lesions[1].cls, a.lesions[1].x, a.lesions[1].y) == ("inflammatory", 5, 2)
    assert (a.lesions[2].x, a.lesions[2].y) == (4, 3)


# The fields CVAT's and Label Studio's COCO exports carry beside the standard ones (per their documentation);
# each tool writes COCO itself, so no converter library is needed.
CVAT_COCO = {
    "licenses": [{"name": "", "id": 0, "url": ""}],
    "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "", "year": ""},
    "categories": [
        {"id": 1, "name": "papules", "supercategory": ""},
        {"id": 2, "name": "whitehead and blackhead", "supercategory": ""},
    ],
    "images": [
        {
            "id": 1,
            "width": 640,
            "height": 480,
            "file_name": "face_01.jpg",
            "license": 0,
            "flickr_url": "",
            "coco_url": "",
            "date_captured": 0,
        }
    ],
    "annotations": [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "segmentation": [],
            "area": 120.0,
            "bbox": [100.0, 120.0, 12.0, 10.0],
            "iscrowd": 0,
            "attributes": {"occluded": False, "rotation": 0.0},
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 2,
            "segmentation": [],
            "area": 16.0,
            "bbox": [300.0, 200.0, 4.0, 4.0],
            "iscrowd": 0,
            "attributes": {"occluded": False, "rotation": 0.0},
        },
    ],
}
CVAT_COCO_KEYPOINTS = {
    "categories": [{"id": 1, "name": "acne", "supercategory": "", "keypoints": ["1"], "skeleton": []}],
    "images": [{"id": 1, "width": 640, "height": 480, "file_name": "face_02.jpg"}],
    "annotations": [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "keypoints": [210.5, 140.0, 2],
            "num_keypoints": 1,
            "bbox": [204.5, 134.0, 12.0, 12.0],
            "area": 144.0,
            "iscrowd": 0,
            "segmentation": [],
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 1,
            "keypoints": [50.0, 60.0, 2],
            "num_keypoints": 1,
            "bbox": [50.0, 60.0, 0.0, 0.0],
            "area": 0.0,
            "iscrowd": 0,
            "segmentation": [],
        },
    ],
}
LABEL_STUDIO_COCO = {  # ids from 0, file names under images/
    "images": [{"width": 640, "height": 480, "id": 0, "file_name": "images/face_03.jpg"}],
    "categories": [{"id": 0, "name": "pustules"}, {"id": 1, "name": "comedone"}],
    "annotations": [
        {
            "id": 0,
            "image_id": 0,
            "category_id": 0,
            "segmentation": [],
            "bbox": [10.0, 20.0, 8.0, 6.0],
            "ignore": 0,
            "iscrowd": 0,
            "area": 48.0,
        },
        {
            "id": 1,
            "image_id": 0,
            "category_id": 1,
            "segmentation": [],
            "bbox": [60.0, 80.0, 4.0, 4.0],
            "ignore": 0,
            "iscrowd": 0,
            "area": 16.0,
        },
    ],
    "info": {"year": 2026, "version": "1.0", "description": "", "contributor": "Label Studio", "url": ""},
}


def test_cvat_and_label_studio_coco_exports_are_read(tmp_path: Path) -> None:
    for name, doc in (("cvat", CVAT_COCO), ("kp", CVAT_COCO_KEYPOINTS), ("ls", LABEL_STUDIO_COCO)):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    (cvat,) = read_coco(tmp_path / "cvat.json")
    assert [(les.cls, les.x, les.y) for les in cvat.lesions] == [
        ("inflammatory", 106.0, 125.0),
        ("comedone", 302.0, 202.0),
    ]
    (kp,) = read_coco(tmp_path / "kp.json")
    # Key points are point labels (no box metrics); the radius is half the box CVAT drew around the point.
    assert kp.lesions == (RefLesion("lesion", 210.5, 140.0, None, 6.0), RefLesion("lesion", 50.0, 60.0, None, 0.0))
    (ls,) = read_coco(tmp_path / "ls.json")
    assert ls.file_name == "images/face_03.jpg" and [les.cls for les in ls.lesions] == ["inflammatory", "comedone"]
    assert ls.lesions[0].bbox is not None and (ls.lesions[0].x, ls.lesions[0].y) == (14.0, 23.0)
    bad = dict(
        CVAT_COCO_KEYPOINTS, annotations=[dict(CVAT_COCO_KEYPOINTS["annotations"][0], keypoints=[1, 2, 2, 5, 6, 2])]
    )
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(AnnotationError, match="exactly one visible keypoint, found 2"):
        read_coco(tmp_path / "bad.json")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("not json", "not valid JSON"),
        ({"annotations": []}, "'images' list"),
        ({"images": [], "annotations": [{"image_id": 1}]}, "needs image_id and category_id"),
        ({"images": [], "categories": [], "annotations": [{"image_id": 1, "category_id": 9}]}, "category_id 9"),
        (
            {
                "images": [{"id": 1, "file_name": "a"}],
                "categories": [{"id": 1, "name": "acne"}],
                "annotations": [{"image_id": 1, "category_id": 1}],
            },
            "needs 'point', 'bbox'",
        ),
    ],
)
def test_coco_malformed(tmp_path: Path, doc: object, message: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(AnnotationError, match=message):
        read_coco(p)


def test_yolo_reader_and_errors(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((50, 100, 3), np.uint8)).save(tmp_path / "p.jpg")
    (tmp_path / "p.txt").write_text("0 0.5 0.5 0.2 0.4\n\n1 0.1 0.1 0.02 0.04\n")
    (ann,) = read_yolo_dir(tmp_path, ["papules", "whitehead and blackhead"])
    assert (ann.width, ann.height) == (100, 50)
    assert [(les.cls, round(les.x, 6), round(les.y, 6)) for les in ann.lesions] == [
        ("inflammatory", 50, 25),
        ("comedone", 10, 5),
    ]
    (tmp_path / "p.txt").write_text("0 0.5 0.5\n")
    with pytest.raises(AnnotationError, match="p.txt:1: expected"):
        read_yolo_dir(tmp_path, ["papules"])
    (tmp_path / "p.txt").write_text("3 0.5 0.5 0.1 0.1\n")
    with pytest.raises(AnnotationError, match="class index 3"):
        read_yolo_dir(tmp_path, ["papules"])


def test_writers_round_trip(tmp_path: Path) -> None:
    ann = ImageAnnotation(
        "a.jpg",
        100,
        80,
        (RefLesion("inflammatory", 20, 30, (15, 25, 10, 10), 5), RefLesion("comedone", 50, 40, (48, 38, 4, 4), 2)),
    )
    write_voc_file(tmp_path / "a.xml", ann)
    assert read_voc_file(tmp_path / "a.xml") == ann
    write_coco(tmp_path / "c.json", [ann])
    (back,) = read_coco(tmp_path / "c.json")
    assert [(les.cls, les.x, les.y, les.bbox) for les in back.lesions] == [
        (les.cls, les.x, les.y, les.bbox) for les in ann.lesions
    ]
    Image.fromarray(np.zeros((80, 100, 3), np.uint8)).save(tmp_path / "a.jpg")
    write_yolo_dir(tmp_path, [ann], ["inflammatory", "comedone"])
    (y,) = read_yolo_dir(tmp_path, ["inflammatory", "comedone"])
    assert [(les.cls, round(les.x, 3), round(les.y, 3)) for les in y.lesions] == [
        ("inflammatory", 20, 30),
        ("comedone", 50, 40),
    ]


def test_acne04_names() -> None:
    assert hayashi_grade_from_name("levle3_12_jpg.rf.0a1b.jpg") == 3
    assert hayashi_grade_from_name("photo.jpg") is None
    assert source_id_from_name("levle3_12_jpg.rf.0a1b.jpg") == "levle3_12"


def test_source_face_joins_a_roboflow_exports_copies_only() -> None:
    from lesioncount.data import source_face

    copies = ["train/levle3_12_jpg.rf.0a1b.jpg", "train/levle3_12_jpg.rf.ff09.jpg", "train/levle3_12_JPG.rf.77.jpg"]
    assert {source_face(n) for n in copies} == {"train/levle3_12"}
    assert source_face("valid/levle3_12_jpg.rf.0a1b.jpg") != source_face(copies[0])  # another folder
    assert source_face("train/levle3_120_jpg.rf.0a1b.jpg") != source_face(copies[0])
    # Anything else is its own face: two patients' front.jpg are two faces.
    assert source_face("p1/front.jpg") != source_face("p2/front.jpg")
    assert source_face("my_jpg_photo.png") == "my_jpg_photo.png"
