from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from toy_model import make_toy_model, red_blob

from lesioncount.infer import Predictor
from lesioncount.pipeline import LesionCounter
from lesioncount.schema import validate_count_result
from lesioncount.types import CountResult

GREY = 170


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_model(tmp_path_factory.mktemp("toy") / "toy.onnx")


def _grey(h: int, w: int) -> np.ndarray:
    return np.full((h, w, 3), GREY, np.uint8)


def test_tiled_prediction_equals_whole_image(toy: Path) -> None:
    pred = Predictor(toy, threads=1)
    img = red_blob(red_blob(_grey(300, 420), 100, 100, 3), 250, 200, 3)
    heat, _ = pred.predict(img)  # 128 px tiles: several tiles
    padded = np.pad(img, ((0, 4), (0, 12), (0, 0)), mode="reflect")
    whole = pred.run(padded)[:3, :150, :210]
    # Reflect padding differs from the neighbour tile's pixels only at the image border; inside, equal.
    np.testing.assert_allclose(heat[:, 2:-2, 2:-2], whole[:, 2:-2, 2:-2], atol=1e-6)


def test_flip_averaging_is_mirror_symmetric_and_keeps_lesions_in_place(toy: Path) -> None:
    img = red_blob(red_blob(_grey(240, 320), 60, 100, 3), 250, 180, 3)  # width a multiple of 16: no padding
    plain, flip = Predictor(toy, threads=1), Predictor(toy, threads=1, flip_average=True)
    assert not plain.flip_average and flip.flip_average  # the toy's contract says no flip; the argument wins
    heat, _ = flip.predict(img)
    heat_m, _ = flip.predict(np.ascontiguousarray(img[:, ::-1]))
    # The average of a photo and its mirror is the same whichever of the two is given.
    np.testing.assert_allclose(heat_m[:, :, ::-1], heat, atol=1e-6)
    a = LesionCounter(toy, threads=1, whole_frame=True).count(img)
    b = LesionCounter(toy, threads=1, whole_frame=True, flip_average=True).count(img)
    assert a.counts == b.counts and a.counts["inflammatory"] == 2
    for la, lb in zip(a.lesions, b.lesions, strict=True):
        assert abs(la.x - lb.x) <= 1.0 and abs(la.y - lb.y) <= 1.0


def test_heat_smoothing_is_a_gaussian_of_the_network_output_and_keeps_lesions(toy: Path) -> None:
    import cv2

    img = red_blob(red_blob(_grey(240, 320), 60, 100, 3), 250, 180, 3)
    plain, smooth = Predictor(toy, threads=1), Predictor(toy, threads=1, heat_sigma=0.8)
    assert plain.heat_sigma == 0.0 and smooth.heat_sigma == 0.8  # the toy's contract says none; the argument wins
    raw, _ = plain.predict(img)
    heat, _ = smooth.predict(img)
    np.testing.assert_allclose(heat[0], cv2.GaussianBlur(raw[0], (0, 0), 0.8), atol=1e-6)
    assert heat[0].max() < raw[0].max()  # a peak is lowered: the thresholds are calibrated with the smoothing
    a = LesionCounter(toy, threads=1, whole_frame=True).count(img)
    b = LesionCounter(toy, threads=1, whole_frame=True, heat_sigma=0.8, threshold=0.3).count(img)
    assert a.counts["inflammatory"] == b.counts["inflammatory"] == 2
    for la, lb in zip(a.lesions, b.lesions, strict=True):
        assert abs(la.x - lb.x) <= 1.0 and abs(la.y - lb.y) <= 1.0


@pytest.mark.parametrize("x", [96.0, 97.0, 95.0])
def test_lesion_on_a_tile_border_is_counted_once(toy: Path, x: float) -> None:
    # Tiles of 128 with overlap 32 start at 0, 96, ...: the kept halves meet at x = 112; the tile windows
    # themselves meet at 96 and 128. Put a lesion on those lines.
    counter = LesionCounter(toy, threads=1, whole_frame=True)
    for cx in (x, 112.0, 128.0):
        img = red_blob(_grey(240, 300), cx, 120, 3)
        r = counter.count(img)
        assert r.counts["inflammatory"] == 1, cx
        assert abs(r.lesions[0].x - cx) <= 1.5  # photo pixels; one map pixel is 0.8 photo pixels here


def test_coordinates_scale_with_resolution(toy: Path) -> None:
    counter = LesionCounter(toy, threads=1, whole_frame=True)
    spots = [(60, 70), (200, 150), (300, 90)]
    small = _grey(240, 360)
    for x, y in spots:
        small = red_blob(small, x, y, 3)
    big = np.kron(small, np.ones((3, 3, 1), np.uint8))  # the same scene at 3x the pixels
    a, b = counter.count(small), counter.count(big)
    assert a.counts == b.counts and a.counts["inflammatory"] == 3
    for la, lb in zip(sorted(a.lesions, key=lambda les: les.x), sorted(b.lesions, key=lambda les: les.x), strict=True):
        assert lb.x == pytest.approx(la.x * 3, abs=3.5) and lb.y == pytest.approx(la.y * 3, abs=3.5)


@pytest.mark.parametrize("orientation", [6, 3, 8])
def test_exif_rotation_gives_rotated_coordinates(toy: Path, tmp_path: Path, orientation: int) -> None:
    stored = red_blob(red_blob(_grey(200, 320), 50, 40, 3), 250, 150, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "r.png", exif=exif)
    Image.fromarray(stored).save(tmp_path / "plain.png")
    counter = LesionCounter(toy, threads=1, whole_frame=True)
    rot, plain = counter.count(tmp_path / "r.png"), counter.count(tmp_path / "plain.png")
    h, w = 200, 320
    assert (rot.image.width, rot.image.height) == ((h, w) if orientation in (6, 8) else (w, h))

    def rotate(x: float, y: float) -> tuple[float, float]:
        # Where a stored pixel appears once the viewer applies the orientation.
        return {6: (h - y, x), 3: (w - x, h - y), 8: (y, w - x)}[orientation]

    expected = sorted(rotate(les.x, les.y) for les in plain.lesions)
    got = sorted((les.x, les.y) for les in rot.lesions)
    assert len(got) == len(expected) == 2
    for (ex, ey), (gx, gy) in zip(expected, got, strict=True):
        assert gx == pytest.approx(ex, abs=1.5) and gy == pytest.approx(ey, abs=1.5)


def test_peaks_just_under_the_threshold_are_kept_apart_and_never_counted(toy: Path) -> None:
    img = red_blob(_grey(200, 320), 80, 100, 3)
    faint = img.copy()
    # A paler spot: the toy's score there lies between half its threshold (0.25) and the threshold (0.5).
    faint[90:111, 210:231] = np.clip(
        img[90:111, 210:231].astype(int) + (red_blob(_grey(21, 21), 10, 10, 3).astype(int) - GREY) // 5, 0, 255
    )
    r = LesionCounter(toy, threads=1, whole_frame=True).count(faint)
    assert r.counts["inflammatory"] == 1 and abs(r.lesions[0].x - 80) <= 1.5
    assert len(r.near_threshold) == 1 and abs(r.near_threshold[0].x - 220) <= 1.5
    assert 0.25 <= r.near_threshold[0].score < 0.5
    doc = r.to_dict()
    validate_count_result(doc)
    assert CountResult.from_dict(doc).to_dict() == doc and len(doc["near_threshold"]) == 1


def test_a_soft_count_marks_its_rounded_sum_of_the_strongest_peaks(toy: Path) -> None:
    """With ``count_softness``, each acne peak at half the threshold or more counts its chance of being a
    lesion; the count is the rounded sum, the marks that many of the strongest peaks, the rest near-threshold."""
    from lesioncount.count import soft_count

    img = red_blob(_grey(200, 320), 80, 100, 3)
    faint = img.copy()
    faint[90:111, 210:231] = np.clip(
        img[90:111, 210:231].astype(int) + (red_blob(_grey(21, 21), 10, 10, 3).astype(int) - GREY) // 5, 0, 255
    )
    hard = LesionCounter(toy, threads=1, whole_frame=True).count(faint)
    assert hard.acne_expected is None and hard.model.count_softness is None
    soft = LesionCounter(toy, threads=1, whole_frame=True, count_softness=0.1).count(faint)
    peaks = [*soft.lesions, *soft.near_threshold]
    assert soft.acne_expected == pytest.approx(soft_count([p.score for p in peaks], 0.5, 0.1))
    assert soft.counts["total_acne"] == round(soft.acne_expected) == len(soft.lesions)
    assert min(les.score for les in soft.lesions) >= max(les.score for les in soft.near_threshold)
    assert soft.model.count_softness == 0.1
    # Centred under the faint peak's score, the count takes it in too.
    (faint_peak,) = soft.near_threshold
    lower = LesionCounter(toy, threads=1, whole_frame=True, count_softness=0.01)
    lower.thresholds |= dict.fromkeys(("inflammatory", "comedone"), faint_peak.score - 0.05)
    two = lower.count(faint)
    assert two.counts["inflammatory"] == 2 and not two.near_threshold
    doc = two.to_dict()
    validate_count_result(doc)
    assert CountResult.from_dict(doc).to_dict() == doc
    # A threshold the user gives is a hard threshold on every peak, whatever the contract says.
    assert LesionCounter(toy, threads=1, threshold=0.5).count_softness == 0.0
    with pytest.raises(ValueError, match="count_softness"):
        LesionCounter(toy, threads=1, count_softness=-0.1)


def test_result_is_valid_schema_and_round_trips(toy: Path, astronaut: np.ndarray) -> None:
    r = LesionCounter(toy, threads=1).count(red_blob(astronaut, 250, 140, 3), name="astronaut.png")
    doc = r.to_dict()
    validate_count_result(doc)
    assert CountResult.from_dict(doc).to_dict() == doc
    assert r.face.found and r.face.view == "front" and r.grades["gags"] is not None


def test_schema_rejects_a_broken_result(toy: Path) -> None:
    import jsonschema

    doc = LesionCounter(toy, threads=1, whole_frame=True).count(_grey(100, 100)).to_dict()
    doc["counts"]["inflammatory"] = -1
    with pytest.raises(jsonschema.ValidationError):
        validate_count_result(doc)


def test_whole_frame_counts_everywhere_with_a_warning(toy: Path) -> None:
    r = LesionCounter(toy, threads=1, whole_frame=True).count(red_blob(_grey(200, 200), 100, 100, 3))
    assert not r.face.found and any("whole frame" in w for w in r.warnings)
    assert r.counts["inflammatory"] == 1
    # The user vouched for the frame, so it is graded (from its one lesion), and says on what basis.
    assert r.grades["hayashi"]["grade"] == 0 and "as asked" in r.grades["hayashi"]["basis"]


def test_skin_without_a_face_is_counted_but_never_graded(toy: Path) -> None:
    # A skin-toned field and no face: counted on its skin (half the frame), with a warning, not graded.
    img = _grey(300, 400)
    img[40:260, 60:340] = (205, 150, 125)
    r = LesionCounter(toy, threads=1).count(img)
    assert not r.face.found and r.face.method == "skin-colour" and r.face.skin_fraction > 0.4
    assert r.grades["hayashi"] is None and r.grades["gags"] is None
    assert any("not graded" in w for w in r.warnings)
    validate_count_result(r.to_dict())


def test_no_face_and_no_skin_counts_nothing_and_grades_nothing(toy: Path) -> None:
    # Grey with a red spot, and random noise: no face, no skin, so no lesion and no grade.
    noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    for img in (red_blob(_grey(200, 200), 100, 100, 3), noise):
        r = LesionCounter(toy, threads=1).count(img)
        assert not r.face.found and r.counts["total_acne"] == 0 and r.lesions == ()
        assert r.grades["hayashi"] is None and r.grades["gags"] is None
        assert any("no skin" in w for w in r.warnings)
        validate_count_result(r.to_dict())


def test_counting_imports_no_torch(toy: Path) -> None:
    code = (
        "import sys, numpy as np; from lesioncount import count_lesions; "
        f"from skimage import data; r = count_lesions(data.astronaut(), model={str(toy)!r}); "
        "assert 'torch' not in sys.modules and 'albumentations' not in sys.modules, 'torch imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_bad_array_input_is_refused(toy: Path) -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        LesionCounter(toy, threads=1, whole_frame=True).count(np.zeros((10, 10), np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        LesionCounter(toy, threshold=1.5)


def test_small_face_in_a_large_jpeg_is_redecoded_at_full_size(tmp_path: Path, astronaut: np.ndarray) -> None:
    # 2560 px: decoded at half size first; the face (about 560 px) would then need enlarging, so the
    # photo is decoded again at full size. Counts and coordinates must equal those of the full array.
    import cv2

    big = cv2.resize(astronaut, None, fx=5, fy=5, interpolation=cv2.INTER_CUBIC)
    for x, y in ((1050, 650), (1300, 700), (1180, 800)):
        big = red_blob(big, x, y, 8)
    Image.fromarray(big).save(tmp_path / "big.png")  # lossless: the same pixels as the array
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=97)
    # A stricter toy (bias 6): only the planted spots, not the lips, are "lesions".
    counter = LesionCounter(make_toy_model(tmp_path / "strict.onnx", bias=6.0), threads=1)
    from_array, from_jpeg = counter.count(big), counter.count(tmp_path / "big.jpg")
    assert from_jpeg.face.found and from_jpeg.face.scale == pytest.approx(from_array.face.scale, rel=0.05)
    assert from_jpeg.face.scale < 1.0  # working scale relative to the full photo: no enlarging
    assert from_jpeg.counts == from_array.counts and from_array.counts["inflammatory"] == 3
    for a, b in zip(from_array.lesions, from_jpeg.lesions, strict=True):
        assert abs(a.x - b.x) < 3 and abs(a.y - b.y) < 3


def test_grayscale_and_damaged_photos_are_counted_but_not_graded(
    toy: Path, tmp_path: Path, astronaut: np.ndarray
) -> None:
    import io

    counter = LesionCounter(toy, threads=1)
    colour = counter.count(astronaut)
    assert colour.grades["hayashi"] is not None
    gray = counter.count(np.repeat(astronaut.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2))
    assert gray.grades["hayashi"] is None and any("grayscale" in w for w in gray.warnings)
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="JPEG", quality=92)
    data = bytearray(buf.getvalue())
    mid = len(data) * 2 // 3
    data[mid : mid + 800] = np.random.default_rng(3).integers(0, 256, 800, dtype=np.uint8).tobytes()
    (tmp_path / "hurt.jpg").write_bytes(bytes(data))
    hurt = counter.count(tmp_path / "hurt.jpg")
    assert hurt.grades["hayashi"] is None and any("damaged image data" in w for w in hurt.warnings)
    validate_count_result(hurt.to_dict())
    assert hurt.model.thresholds == counter.thresholds


def test_one_counter_is_safe_to_share_between_threads(toy: Path, astronaut: np.ndarray) -> None:
    """The web app and batch share one LesionCounter across threads: results equal the sequential ones."""
    from concurrent.futures import ThreadPoolExecutor

    counter = LesionCounter(toy, threads=1)
    photos = [red_blob(astronaut, 200 + 20 * i, 150, 3) for i in range(4)]
    alone = [counter.count(p).to_dict() for p in photos]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(counter.count, photos * 2))
    for i, r in enumerate(together):
        d = r.to_dict()
        assert d["lesions"] == alone[i % 4]["lesions"] and d["face"] == alone[i % 4]["face"]
