from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from lesioncount.data import AnnotationError, ImageAnnotation, RefLesion, write_coco, write_voc_file, write_yolo_dir
from lesioncount.evaluate import EvalConfig, EvaluateError, LesionSet, evaluate_image, summarize
from lesioncount.evaluate.run import (
    Pair,
    evaluate_pairs,
    evaluate_photos,
    evaluate_predictions,
    evaluate_raters,
    load_labels,
    read_count_json,
)
from lesioncount.io import write_json
from lesioncount.report.evaluate_html import write_evaluation
from lesioncount.types import CountResult, FaceInfo, ImageInfo, Lesion, ModelInfo

FAST = EvalConfig(bootstrap=50)


def _ref(cls: str, x: float, y: float, r: float = 10.0) -> RefLesion:
    return RefLesion(cls, x, y, (x - r, y - r, 2 * r, 2 * r), r)


def _les(cls: str, x: float, y: float, score: float, half: float = 10.0) -> Lesion:
    return Lesion(cls, x, y, math.pi * half**2, (x - half, y - half, 2 * half, 2 * half), score)


def _write_prediction(path: Path, image_path: str, lesions: list[Lesion], w: int = 640, h: int = 640) -> None:
    res = CountResult(
        ImageInfo(image_path, w, h, "0" * 64),
        ModelInfo("test", "0", "0" * 64),
        FaceInfo(True, (0, 0, w, h), "test"),
        tuple(lesions),
        counts={},
        counts_by_region={},
        grades={},
    )
    write_json(path, res.to_dict())


LABELS = [
    ImageAnnotation(
        "a.jpg", 640, 640, (_ref("inflammatory", 100, 100), _ref("comedone", 200, 200), _ref("inflammatory", 300, 300))
    ),
    ImageAnnotation("b.jpg", 640, 640, ()),
    ImageAnnotation("c.jpg", 640, 640, (_ref("inflammatory", 50, 50, r=4),)),
]
PREDICTIONS = {
    "a": [_les("inflammatory", 103, 100, 0.9), _les("comedone", 200, 205, 0.8), _les("inflammatory", 500, 500, 0.7)],
    "b": [],
    "c": [_les("comedone", 50, 57, 0.6)],  # 7 px from an r=4 reference: inside the 8 px floor, wrong class
}


@pytest.fixture()
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    """A COCO label file and a folder of count JSON predictions for LABELS/PREDICTIONS."""
    coco = tmp_path / "labels.json"
    write_coco(coco, LABELS)
    pred = tmp_path / "pred"
    for stem, lesions in PREDICTIONS.items():
        _write_prediction(pred / f"{stem}.json", f"/somewhere/else/{stem}.jpg", lesions)
    return coco, pred


def test_predictions_mode_golden(dataset: tuple[Path, Path]) -> None:
    coco, pred = dataset
    res = evaluate_predictions(load_labels(coco), pred, FAST)
    m = res.metrics
    assert m["n_images"] == 3 and m["mode"] == "predictions"
    d = m["groups"]["all"]["detection"]
    assert (d["tp"], d["fp"], d["fn"]) == (3, 1, 1)
    assert d["precision"] == pytest.approx(0.75) and d["recall"] == pytest.approx(0.75)
    # Score order: .9 TP, .8 TP, .7 FP, .6 TP over 4 references -> 0.5 * 1 + 0.25 * 0.75.
    assert d["ap"] == pytest.approx(0.6875)
    inf, com = m["groups"]["inflammatory"]["detection"], m["groups"]["comedone"]["detection"]
    assert (inf["tp"], inf["fp"], inf["fn"]) == (1, 1, 2)
    assert (com["tp"], com["fp"], com["fn"]) == (1, 1, 0)
    assert "scar" not in m["groups"]
    # Per-class AP: inflammatory .9 TP, .7 FP over 3 refs -> 1/3; comedone .8 TP, .6 FP over 1 ref -> 1.
    assert inf["ap"] == pytest.approx(1 / 3) and com["ap"] == pytest.approx(1.0)
    assert m["map"] == pytest.approx(2 / 3) and m["box_map50"] == pytest.approx(2 / 3)  # mean over classes
    # The headline is one rule, all lesions as one class: box AP50 of .9 TP .8 TP .7 FP .6 FP over 4 refs.
    assert m["headline"]["box_ap50"] == pytest.approx(m["groups"]["all"]["detection"]["box"]["ap50"])
    assert "all lesions" in m["averaging"] or "one class" in m["averaging"]
    assert m["models"] == [
        {"name": "test", "version": "0", "sha256": "0" * 64, "thresholds": None, "count_softness": None, "n_images": 3}
    ]
    c = m["groups"]["all"]["count"]
    assert c["mae"] == 0 and c["pearson_r"] == pytest.approx(1.0)
    assert m["grades"]["accuracy"] == 1.0 and m["grades"]["reference_source"] == {"labels": 0, "counts": 3}
    assert set(m["ci95"]) >= {"precision", "recall", "count_mae"}


def test_box_matching_counts(dataset: tuple[Path, Path]) -> None:
    coco, pred = dataset
    d = evaluate_predictions(load_labels(coco), pred, FAST).metrics["groups"]["all"]["detection"]["box"]
    # 20x20 boxes shifted 3 px: IoU 340/460 = 0.74 (match); shifted 5 px: 300/500 = 0.6 (match); c: 52/.. no.
    assert (d["tp"], d["fp"], d["fn"]) == (2, 2, 2)


def test_outputs_are_written_and_valid(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    coco, pred = dataset
    res = evaluate_predictions(load_labels(coco), pred, FAST)
    paths = write_evaluation(res, tmp_path / "out")

    def no_nan(c: str) -> float:
        raise AssertionError(f"metrics.json holds {c}: not valid JSON")

    m = json.loads(paths["metrics"].read_text(), parse_constant=no_nan)
    assert m["config"]["min_tolerance_px"] == 8.0 and m["pr_curve"]["recall"][-1] == pytest.approx(0.75)
    rows = list(csv.DictReader(paths["per_image"].read_text().splitlines()))
    assert [r["file_name"] for r in rows] == ["a.jpg", "b.jpg", "c.jpg"]
    assert rows[0]["tp_all"] == "2" and rows[0]["fp_all"] == "1" and rows[1]["ref_all"] == "0"
    html = paths["report"].read_text()
    assert html.count("<img") >= 6 and "Bland-Altman" in html and "Worst photos" in html
    assert "against the score threshold" in html
    assert "at least 8 px" in html and "8.000 px" not in html  # settings as written, not as metrics
    assert html.count("<div class=wide><table>") == html.count("<table>")  # wide tables scroll in the page
    assert "model test 0 (sha256 000000000000...)" in html


def test_prediction_in_a_larger_frame_is_rescaled(tmp_path: Path) -> None:
    labels = [ImageAnnotation("a.jpg", 640, 480, (_ref("inflammatory", 100, 100),))]
    _write_prediction(tmp_path / "p" / "a.json", "a.jpg", [_les("inflammatory", 200, 200, 0.9)], w=1280, h=960)
    res = evaluate_predictions(labels, tmp_path / "p", FAST)
    assert res.metrics["groups"]["all"]["detection"]["tp"] == 1


def test_missing_predictions_fail_clearly_or_are_skipped(dataset: tuple[Path, Path]) -> None:
    coco, pred = dataset
    (pred / "c.json").unlink()
    with pytest.raises(EvaluateError, match=r"1 labelled photo\(s\) have no prediction: c.jpg.*--skip-missing"):
        evaluate_predictions(load_labels(coco), pred, FAST)
    res = evaluate_predictions(load_labels(coco), pred, EvalConfig(bootstrap=0, missing="skip"))
    assert res.metrics["n_images"] == 2 and "c.jpg" in res.notes[0]
    assert res.metrics["ci95"] == {}


def test_predictions_that_are_not_results_or_have_no_label_are_said(dataset: tuple[Path, Path]) -> None:
    coco, pred = dataset
    (pred / "results.coco.json").write_text('[{"image_id": 1, "bbox": [1, 2, 3, 4]}]')
    (pred / "notes.json").write_text('{"foo": 1}')
    _write_prediction(pred / "zz.json", "zz.jpg", [])
    res = evaluate_predictions(load_labels(coco), pred, FAST)
    assert res.metrics["n_images"] == 3
    assert "2 .json file(s) that are not count results left out: notes.json, results.coco.json" in res.notes
    assert "1 prediction(s) without a labelled photo left out: zz.json" in res.notes
    # Nothing to score is an error, not an empty report.
    labels = [a for a in load_labels(coco) if a.file_name == "a.jpg"]
    (pred / "a.json").unlink()
    with pytest.raises(EvaluateError, match="nothing to score"):
        evaluate_predictions(labels, pred, EvalConfig(bootstrap=0, missing="skip"))


def test_bad_count_json_names_the_file(dataset: tuple[Path, Path]) -> None:
    coco, pred = dataset
    (pred / "a.json").write_text('{"image": {"path": "a.jpg"}}')
    with pytest.raises(EvaluateError, match=r"a\.json: not a lesioncount count result"):
        evaluate_predictions(load_labels(coco), pred, FAST)
    (pred / "a.json").write_text("{nope")
    with pytest.raises(EvaluateError, match=r"a\.json: not readable JSON"):
        read_count_json(pred / "a.json")
    (coco.parent / "empty").mkdir()
    with pytest.raises(EvaluateError, match="no count results found"):
        evaluate_predictions(load_labels(coco), coco.parent / "empty", FAST)
    (coco.parent / "empty" / "results.coco.json").write_text('[{"image_id": 1, "bbox": [1, 2, 3, 4]}]')
    with pytest.raises(EvaluateError, match=r"no count results found \(1 .json file\(s\) that are not count results"):
        evaluate_predictions(load_labels(coco), coco.parent / "empty", FAST)
    with pytest.raises(EvaluateError, match="must be a folder"):
        evaluate_predictions(load_labels(coco), coco, FAST)


def test_raters_mode_against_itself_is_perfect(tmp_path: Path) -> None:
    labels = [*LABELS, ImageAnnotation("d.jpg", 640, 640, (_ref("comedone", 9, 9),) * 2)]
    res = evaluate_raters(labels, labels, FAST)
    m = res.metrics
    assert m["scored"] is False and "ap" not in m["groups"]["all"]["detection"]
    assert m["groups"]["all"]["detection"]["f1"] == 1.0
    assert m["groups"]["all"]["detection"]["box"]["f1"] == 1.0
    assert m["groups"]["all"]["count"]["icc_2_1"] == pytest.approx(1.0)
    assert m["groups"]["all"]["count"]["ba_sd"] == 0.0
    assert math.isnan(m["headline"]["ap"]) and math.isnan(m["box_map50"])
    write_evaluation(res, tmp_path / "out")  # no PR curve: the report still renders


def test_raters_mode_with_voc_and_yolo_files(tmp_path: Path) -> None:
    for ann in LABELS:
        write_voc_file(tmp_path / "voc" / (Path(ann.file_name).stem + ".xml"), ann)
    write_yolo_dir(tmp_path / "yolo", LABELS, ["inflammatory", "comedone"])
    for ann in LABELS:  # YOLO needs the photos for their sizes
        from PIL import Image

        Image.new("RGB", (640, 640)).save(tmp_path / "yolo" / ann.file_name)
    voc = load_labels(tmp_path / "voc")
    yolo = load_labels(tmp_path / "yolo", yolo_names=["inflammatory", "comedone"])
    m = evaluate_raters(voc, yolo, FAST).metrics
    assert m["n_images"] == 3 and m["groups"]["all"]["detection"]["f1"] == pytest.approx(1.0)


def test_hayashi_grade_comes_from_the_labels_when_given() -> None:
    ann = ImageAnnotation("levle2_5_jpg.rf.abc.jpg", 640, 640, (_ref("lesion", 10, 10),))
    rec = evaluate_raters([ann], [ann], FAST).records[0]
    assert (rec.ref_grade, rec.ref_grade_source, rec.pred_grade) == (2, "labels", 0)
    rec = evaluate_raters([ann], [ann], EvalConfig(bootstrap=0, grade_from="counts")).records[0]
    assert (rec.ref_grade, rec.ref_grade_source) == (0, "counts")
    attr = ImageAnnotation("x.jpg", 640, 640, (), {"hayashi_grade": 3})
    assert evaluate_raters([attr], [attr], FAST).records[0].ref_grade == 3
    plain = ImageAnnotation("x.jpg", 640, 640, ())
    with pytest.raises(EvaluateError, match="labels give no Hayashi grade"):
        evaluate_raters([plain], [plain], EvalConfig(grade_from="labels"))


def test_scars_stay_out_of_the_class_agnostic_group() -> None:
    pred = LesionSet.from_lesions([_les("scar", 10, 10, 0.9), _les("inflammatory", 50, 50, 0.9)])
    ref = LesionSet.from_refs([_ref("inflammatory", 50, 50)])
    rec, _ = evaluate_image(pred, ref, FAST, file_name="x.jpg")
    assert (rec.groups["all"].n_pred, rec.groups["all"].tp) == (1, 1)
    assert rec.groups["scar"].n_pred == 1
    rec, _ = evaluate_image(pred, ref, EvalConfig(exclude_classes=(), class_agnostic=True), file_name="x.jpg")
    assert rec.groups["all"].n_pred == 2 and list(rec.groups) == ["all"]


def test_intervals_resample_faces_not_copies() -> None:
    # 12 faces, each a photo and two Roboflow copies of it; the count is right on half the faces.
    rng = np.random.default_rng(0)
    records = []
    for face in range(12):
        n_ref, n_pred = (3, 3) if face % 2 else (3, int(rng.integers(6, 9)))
        ref = LesionSet.from_refs([_ref("inflammatory", 20 * k, 20) for k in range(n_ref)])
        pred = LesionSet.from_lesions([_les("inflammatory", 20 * k, 20, 0.9) for k in range(n_pred)])
        for copy in ("a1", "b2", "c3"):
            name = f"train/levle0_{face}_jpg.rf.{copy}.jpg"
            records.append(evaluate_image(pred, ref, FAST, file_name=name, label_grade=0)[0])
    by_face = summarize(records, EvalConfig(bootstrap=400))
    assert (by_face["n_images"], by_face["n_faces"]) == (36, 12)
    assert "source face" in by_face["bootstrap_unit"]
    lo, hi = by_face["ci95"]["grade_accuracy"]
    assert by_face["headline"]["grade_accuracy"] == pytest.approx(0.5)
    # 12 faces, not 36 photos: about +-0.28, where 36 independent photos would give about +-0.16.
    assert hi - lo > 0.4
    distinct = [dataclasses.replace(r, file_name=f"p{k}.jpg") for k, r in enumerate(records)]
    lo36, hi36 = summarize(distinct, EvalConfig(bootstrap=400))["ci95"]["grade_accuracy"]
    assert summarize(distinct, FAST)["n_faces"] == 36 and hi36 - lo36 < hi - lo


def test_malformed_label_files_give_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(AnnotationError, match="bad.json: not valid JSON"):
        load_labels(bad)
    bad.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg"}],
                "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}],
                "categories": [{"id": 1, "name": "zit"}],
            }
        )
    )
    with pytest.raises(AnnotationError, match="unknown class 'zit'; add it to the class map"):
        load_labels(bad)
    assert load_labels(bad, class_map={"zit": "inflammatory"})[0].lesions[0].cls == "inflammatory"
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "a.xml").write_text("<annotation><object>")
    with pytest.raises(AnnotationError, match=r"a\.xml: not valid XML"):
        load_labels(tmp_path / "voc")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnnotationError, match="no .xml .* or .txt"):
        load_labels(tmp_path / "empty")
    with pytest.raises(AnnotationError, match="no such file or folder"):
        load_labels(tmp_path / "missing.json")
    (tmp_path / "yolo").mkdir()
    (tmp_path / "yolo" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(AnnotationError, match="need class names"):
        load_labels(tmp_path / "yolo")
    (tmp_path / "labels.csv").write_text("x")
    with pytest.raises(AnnotationError, match="COCO .json file or a folder"):
        load_labels(tmp_path / "labels.csv")


def test_config_is_checked() -> None:
    with pytest.raises(EvaluateError, match="tolerance_mode 'centre' unknown"):
        EvalConfig(tolerance_mode="centre")
    with pytest.raises(EvaluateError, match="iou_threshold"):
        EvalConfig(iou_threshold=0)
    with pytest.raises(EvaluateError, match="grade_from"):
        EvalConfig(grade_from="x")


def test_empty_label_set(tmp_path: Path) -> None:
    res = evaluate_raters([], [], FAST)
    assert res.metrics["n_images"] == 0 and math.isnan(res.metrics["headline"]["precision"])
    paths = write_evaluation(res, tmp_path / "out")
    assert json.loads(paths["metrics"].read_text())["headline"]["precision"] is None
    assert paths["per_image"].read_text().startswith("file_name")


def test_photos_with_zero_lesions_everywhere(tmp_path: Path) -> None:
    labels = [ImageAnnotation(f"{i}.jpg", 100, 100, ()) for i in range(4)]
    res = evaluate_raters(labels, labels, FAST)
    h = res.metrics["headline"]
    assert math.isnan(h["precision"]) and math.isnan(h["recall"]) and h["count_mae"] == 0
    assert math.isnan(h["count_pearson_r"]) and h["grade_accuracy"] == 1.0
    write_evaluation(res, tmp_path / "out")


def test_a_thousand_photos_stream_through_bounded_memory() -> None:
    rng = np.random.default_rng(0)
    made = 0

    def pairs():
        nonlocal made
        for i in range(1000):
            n_ref, n_pred = rng.integers(0, 30, 2)
            ref = [_ref("lesion", *rng.uniform(0, 600, 2)) for _ in range(n_ref)]
            pred = [_les("inflammatory", *rng.uniform(0, 600, 2), float(rng.uniform())) for _ in range(n_pred)]
            made += 1
            yield Pair(ImageAnnotation(f"{i}.jpg", 640, 640, tuple(ref)), LesionSet.from_lesions(pred))

    res = evaluate_pairs(pairs(), EvalConfig(bootstrap=20, worst=5), mode="predictions")
    assert made == 1000 and res.metrics["n_images"] == 1000
    assert len(res.worst) == 5  # only the worst photos' lesions are kept for the gallery
    errs = [abs(o.n_pred - o.n_ref) for o in res.worst]
    assert errs == sorted(errs, reverse=True) and errs[0] == max(abs(r.count_error) for r in res.records)


def test_summary_is_deterministic_for_a_seed(dataset: tuple[Path, Path]) -> None:
    coco, pred = dataset
    a = evaluate_predictions(load_labels(coco), pred, FAST)
    b = summarize(a.records, FAST)
    assert b["ci95"] == a.metrics["ci95"]


# ---------------------------------------------------------------- CLI


def test_cli_predictions_mode(dataset: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lesioncount.cli import main

    coco, pred = dataset
    out = tmp_path / "cli"
    rc = main(
        [
            "evaluate",
            str(coco),
            "--predictions",
            str(pred),
            "-o",
            str(out),
            "--bootstrap",
            "20",
            "--no-progress",
            "--min-tolerance-px",
            "2",
        ]
    )
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"metrics.json", "per_image.csv", "report.html"}
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["min_tolerance_px"] == 2.0
    assert m["groups"]["all"]["detection"]["tp"] == 2  # c's 7 px offset no longer matches an r=4 reference
    assert "precision" in capsys.readouterr().out


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lesioncount.cli import main

    rc = main(["evaluate", str(tmp_path / "none.json"), "--against", str(tmp_path), "-o", str(tmp_path / "o")])
    assert rc == 2 and "no such file or folder" in capsys.readouterr().err
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("min_tolerance: 4\n")
    rc = main(["evaluate", str(tmp_path), "--against", str(tmp_path), "-o", str(tmp_path / "o"), "--config", str(cfg)])
    assert rc == 2 and "did you mean 'min_tolerance_px'" in capsys.readouterr().err
    rc = main(["evaluate", str(tmp_path), "--against", str(tmp_path), "-o", str(tmp_path / "o"), "--class-map", "x"])
    assert rc == 2 and "NAME=CLASS" in capsys.readouterr().err
    # A typo in the target would silently drop every typed class: refused, naming the targets.
    rc = main(
        [
            "evaluate",
            str(tmp_path),
            "--against",
            str(tmp_path),
            "-o",
            str(tmp_path / "o"),
            "--class-map",
            "papule=pustule",
        ]
    )
    assert (
        rc == 2
        and "papule=pustule: a label maps to one of inflammatory, comedone, scar, lesion" in capsys.readouterr().err
    )


# ---------------------------------------------------------------- the known answer on real data


@pytest.mark.shared_data
def test_acne04_boxes_against_expert_points(acne04: Path) -> None:
    valid = acne04 / "valid"
    ref = load_labels(valid / "expert_points.coco.json")
    boxes = load_labels(valid)
    m = evaluate_raters(ref, boxes, EvalConfig(bootstrap=100)).metrics
    assert m["n_images"] == 243  # only photos the expert file covers
    d, c = m["groups"]["all"]["detection"], m["groups"]["all"]["count"]
    assert d["precision"] == pytest.approx(0.58, abs=0.01)
    assert d["recall"] == pytest.approx(0.19, abs=0.01)
    assert c["pearson_r"] == pytest.approx(0.56, abs=0.01)
    lo, hi = m["ci95"]["count_pearson_r"]
    assert lo < c["pearson_r"] < hi


def test_cli_config_file_and_flags(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    from lesioncount.cli import main

    coco, pred = dataset
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        "tolerance_mode: fixed\nmin_tolerance_px: 4\nexclude_classes: []\nclass_agnostic: true\nbootstrap: 0\n"
    )
    out = tmp_path / "o"
    assert (
        main(
            [
                "evaluate",
                str(coco),
                "--predictions",
                str(pred),
                "-o",
                str(out),
                "--config",
                str(cfg),
                "--no-progress",
                "--no-report",
                "--iou",
                "0.3",
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["tolerance_mode"] == "fixed" and m["config"]["iou_threshold"] == 0.3
    assert m["config"]["exclude_classes"] == [] and list(m["groups"]) == ["all"]
    assert m["groups"]["all"]["detection"]["tp"] == 1  # only the 3 px offset lies within a fixed 4 px
    assert m["ci95"] == {} and not (out / "report.html").exists()


def test_classes_the_reference_lacks_are_skipped_and_said(tmp_path: Path) -> None:
    labels = [ImageAnnotation("a.jpg", 640, 640, (_ref("inflammatory", 100, 100),))]
    pred = tmp_path / "pred"
    _write_prediction(pred / "a.json", "a.jpg", [_les("inflammatory", 101, 100, 0.9), _les("scar", 300, 300, 0.8)])
    m = evaluate_predictions(labels, pred, FAST).metrics
    assert "scar" not in m["groups"] and "scar" in m["skipped_classes"]
    assert "marks no scar lesions (1 predicted)" in m["skipped_classes"]["scar"]


def test_point_labels_get_no_box_metrics(tmp_path: Path) -> None:
    import json as _json

    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 640}],
        "categories": [{"id": 1, "name": "acne"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "point": [100, 100], "radius": 5, "bbox": [95, 95, 10, 10]}
        ],
    }
    (tmp_path / "points.json").write_text(_json.dumps(doc))
    pred = tmp_path / "pred"
    _write_prediction(pred / "a.json", "a.jpg", [_les("inflammatory", 101, 100, 0.9)])
    m = evaluate_predictions(load_labels(tmp_path / "points.json"), pred, FAST).metrics
    assert m["groups"]["all"]["detection"]["tp"] == 1
    assert "box" not in m["groups"]["all"]["detection"] and math.isnan(m["headline"]["box_ap50"])


def test_tolerance_sweep_ar_and_best_f1_known_answer(tmp_path: Path) -> None:
    """Four references (radius 10) and predictions 3, 7, 12 and 18 px away, plus one far false positive."""
    refs = tuple(_ref("inflammatory", x, y, r=10) for x, y in ((100, 100), (300, 100), (100, 300), (300, 300)))
    labels = [ImageAnnotation("a.jpg", 640, 640, refs)]
    preds = [
        _les("inflammatory", 103, 100, 0.9),
        _les("inflammatory", 307, 100, 0.8),
        _les("inflammatory", 112, 300, 0.7),
        _les("inflammatory", 318, 300, 0.6),
        _les("inflammatory", 500, 500, 0.5),
    ]
    _write_prediction(tmp_path / "pred" / "a.json", "a.jpg", preds)
    m = evaluate_predictions(labels, tmp_path / "pred", FAST).metrics
    d = m["groups"]["all"]["detection"]
    # Tolerances 5, 7.5, 10, 12.5, 15, 17.5, 20 px: 1, 2, 2, 3, 3, 3, 4 hits, each in score order.
    expected = [0.25, 0.5, 0.5, 0.75, 0.75, 0.75, 1.0]
    assert [row["ap"] for row in d["sweep"]] == pytest.approx(expected)
    assert [row["recall"] for row in d["sweep"]] == pytest.approx(expected)
    assert d["ap_sweep"] == pytest.approx(4.5 / 7) and d["ap_strict"] == pytest.approx(0.25)
    assert d["ar"] == pytest.approx(4.5 / 7) and m["headline"]["ap_sweep"] == pytest.approx(4.5 / 7)
    # At the default tolerance: .9 and .8 hit; the best F1 keeps exactly those two (P 1, R 0.5).
    assert m["best_f1"] == pytest.approx({"threshold": 0.8, "f1": 2 / 3, "precision": 1.0, "recall": 0.5})


def test_class_confusion_with_background_known_answer(dataset: tuple[Path, Path]) -> None:
    coco, pred = dataset
    m = evaluate_predictions(load_labels(coco), pred, FAST).metrics
    cc = m["class_confusion"]
    assert cc["labels"] == ["comedone", "inflammatory", "background"]
    at = lambda ref, got: cc["matrix"][cc["labels"].index(ref)][cc["labels"].index(got)]  # noqa: E731
    # a.jpg: inflammatory found as inflammatory, comedone as comedone, one inflammatory missed and one
    # false inflammatory far away; c.jpg: an inflammatory reference matched by a comedone prediction.
    assert at("inflammatory", "inflammatory") == 1 and at("comedone", "comedone") == 1
    assert at("inflammatory", "comedone") == 1
    assert at("inflammatory", "background") == 1 and at("background", "inflammatory") == 1
    assert sum(map(sum, cc["matrix"])) == 5


def test_recall_by_lesion_size_known_answer(dataset: tuple[Path, Path]) -> None:
    coco, pred = dataset
    rows = {r["size"]: r for r in evaluate_predictions(load_labels(coco), pred, FAST).metrics["by_size"]}
    # Radius 10 references: 3 (two found); the radius-4 one of c.jpg: found (class-agnostic, 7 px < 8 px floor).
    assert (rows["large (>= 8 px)"]["n_ref"], rows["large (>= 8 px)"]["found"]) == (3, 2)
    assert (rows["medium (4-8 px)"]["n_ref"], rows["medium (4-8 px)"]["recall"]) == (1, 1.0)
    assert rows["small (radius < 4 px)"]["n_ref"] == 0 and math.isnan(rows["small (radius < 4 px)"]["recall"])


def test_speed_line_from_the_counts_timings(tmp_path: Path) -> None:
    labels = [ImageAnnotation(f"{i}.jpg", 640, 640, (_ref("inflammatory", 100, 100),)) for i in range(3)]
    for i, ms in enumerate((100, 200, 600)):
        path = tmp_path / "pred" / f"{i}.json"
        _write_prediction(path, f"{i}.jpg", [_les("inflammatory", 100, 100, 0.9)])
        doc = json.loads(path.read_text())
        doc["timing_s"] = {"inference": ms / 1000, "total": 2 * ms / 1000}
        path.write_text(json.dumps(doc))
    m = evaluate_predictions(labels, tmp_path / "pred", FAST).metrics
    assert m["speed_ms_per_photo"]["inference"]["median_ms"] == pytest.approx(200)
    assert m["speed_ms_per_photo"]["total"]["mean_ms"] == pytest.approx(600)


def test_expert_style_marks_are_scored_when_asked(tmp_path: Path) -> None:
    """--marks expert scores a result's expert-style marks (one untyped class) instead of its counted lesions."""
    labels = [ImageAnnotation("a.jpg", 640, 640, tuple(_ref("lesion", 100 + 100 * k, 100) for k in range(4)))]
    res = CountResult(
        ImageInfo("a.jpg", 640, 640, "0" * 64),
        ModelInfo("test", "0", "0" * 64),
        FaceInfo(True, (0, 0, 640, 640), "test"),
        (_les("inflammatory", 100, 100, 0.9),),
        counts={},
        counts_by_region={},
        grades={},
        expert_marks=tuple(_les("acne", 100 + 100 * k, 102, 0.5) for k in range(3)),
    )
    write_json(tmp_path / "p" / "a.json", res.to_dict())
    counted = evaluate_predictions(labels, tmp_path / "p", FAST).metrics["groups"]["all"]["detection"]
    expert = evaluate_predictions(labels, tmp_path / "p", EvalConfig(bootstrap=50, marks="expert"))
    d = expert.metrics["groups"]["all"]["detection"]
    assert (counted["tp"], counted["fn"]) == (1, 3) and (d["tp"], d["fp"], d["fn"]) == (3, 0, 1)
    from lesioncount.report.evaluate_html import run_facts

    said = "scored: the expert-style marks (--marks expert)"  # the terminal and the report say what was scored
    assert any(said in line for line in run_facts(expert.metrics))
    assert not any(said in line for line in run_facts(evaluate_predictions(labels, tmp_path / "p", FAST).metrics))
    with pytest.raises(EvaluateError, match="marks 'both' unknown"):
        EvalConfig(marks="both")


def test_expert_marks_of_a_model_without_them_are_refused(tmp_path: Path) -> None:
    from toy_model import make_toy_model  # a model with no experts' heatmap

    toy = make_toy_model(tmp_path / "toy.onnx")
    with pytest.raises(EvaluateError, match="gives no expert-style marks"):
        evaluate_photos(LABELS, tmp_path, EvalConfig(marks="expert"), model=toy)
