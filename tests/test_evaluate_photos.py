"""Photo mode: ``lesioncount evaluate LABELS --photos DIR`` runs the counting core itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lesioncount.data import ImageAnnotation, RefLesion, write_coco
from lesioncount.evaluate import EvalConfig, EvaluateError, evaluate_photos, evaluate_predictions, load_labels
from lesioncount.io import write_image
from lesioncount.synth import plant, skin_tone_mask

FAST = EvalConfig(bootstrap=20)


@pytest.fixture(scope="module")
def planted_set(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> tuple[Path, Path]:
    """Two small photos with planted lesions, their COCO labels, and an unlabelled extra photo."""
    root = tmp_path_factory.mktemp("planted")
    skin = skin_tone_mask(astronaut)
    anns = []
    for i, counts in enumerate(({"papule": 6, "pustule": 3}, {"papule": 2, "blackhead": 2})):
        image, planted = plant(astronaut, counts, i, allowed=skin)
        write_image(root / "photos" / f"p{i}.png", image)
        lesions = tuple(RefLesion(p.cls or "lesion", p.x, p.y, p.bbox, p.radius) for p in planted if p.cls)
        anns.append(ImageAnnotation(f"p{i}.png", image.shape[1], image.shape[0], lesions))
    write_image(root / "photos" / "unlabelled.png", astronaut)
    write_coco(root / "labels.json", anns)
    return root / "labels.json", root / "photos"


def test_photo_mode_scores_what_the_counter_finds(planted_set: tuple[Path, Path], counter, tmp_path: Path) -> None:
    labels_path, photos = planted_set
    labels = load_labels(labels_path)
    seen: list[tuple[int, int]] = []
    res = evaluate_photos(
        labels, photos, FAST, counter=counter, progress=lambda d, t: seen.append((d, t)), save_predictions=tmp_path
    )
    assert res.metrics["mode"] == "photos" and res.metrics["n_images"] == 2
    assert seen == [(1, 2), (2, 2)]
    for rec in res.records:
        direct = counter.count(photos / rec.file_name)
        assert rec.groups["all"].n_pred == direct.counts["total_acne"]
        assert rec.groups["all"].n_ref == len(labels[int(rec.file_name[1])].lesions)
    assert res.metrics["scored"] is True and res.metrics["pr_curve"] is not None
    # The saved count JSON re-scores to the same numbers without counting again.
    again = evaluate_predictions(labels, tmp_path, FAST)
    assert again.metrics["headline"] == pytest.approx(res.metrics["headline"], nan_ok=True)
    assert {p.name for p in tmp_path.glob("*.json")} == {"p0.json", "p1.json"}


def test_photo_mode_missing_and_unreadable_photos(planted_set: tuple[Path, Path], counter, tmp_path: Path) -> None:
    labels_path, photos = planted_set
    labels = [*load_labels(labels_path), ImageAnnotation("gone.png", 512, 512, ())]
    with pytest.raises(EvaluateError, match="have no photo: gone.png"):
        evaluate_photos(labels, photos, FAST, counter=counter)
    broken = tmp_path / "photos"
    broken.mkdir()
    (broken / "p0.png").write_bytes(b"not a png")
    with pytest.raises(EvaluateError, match=r"p0\.png: cannot be counted"):
        evaluate_photos(labels[:1], broken, FAST, counter=counter)
    res = evaluate_photos(labels[:1], broken, EvalConfig(bootstrap=0, missing="skip"), counter=counter)
    assert res.metrics["n_images"] == 0 and "p0.png left out" in res.notes[0]


@pytest.mark.slow
def test_worker_processes_give_the_same_numbers(planted_set: tuple[Path, Path], counter) -> None:
    labels = load_labels(planted_set[0])
    one = evaluate_photos(labels, planted_set[1], FAST, counter=counter)
    two = evaluate_photos(labels, planted_set[1], FAST, jobs=2)
    assert two.metrics["headline"] == pytest.approx(one.metrics["headline"], nan_ok=True)


def test_cli_photo_mode(planted_set: tuple[Path, Path], tmp_path: Path) -> None:
    from lesioncount.cli import main

    rc = main(
        [
            "evaluate",
            str(planted_set[0]),
            "--photos",
            str(planted_set[1]),
            "-o",
            str(tmp_path),
            "--bootstrap",
            "10",
            "--threads",
            "1",
            "--no-progress",
            "--worst",
            "1",
        ]
    )
    assert rc == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["n_images"] == 2 and m["mode"] == "photos"
    assert (tmp_path / "report.html").read_text().count("data:image/jpeg") == 1


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_checkpoint_given_as_the_model_is_one_clear_error(
    planted_set: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], jobs: str
) -> None:
    from lesioncount.cli import main

    pt = tmp_path / "final.pt"
    pt.write_bytes(b"PK\x03\x04 a torch checkpoint, say")
    labels, photos = planted_set
    args = ["evaluate", str(labels), "--photos", str(photos), "-o", str(tmp_path / "o"), "--model", str(pt)]
    assert main([*args, "--jobs", jobs, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "final.pt: not a loadable ONNX model" in err and "lesioncount export" in err and "Traceback" not in err
