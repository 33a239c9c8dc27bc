"""Training path: targets, a tiny run that learns, export parity, int8, and the shipped model's contract."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from lesioncount.config import ConfigError, TrainConfig, load_yaml  # noqa: E402
from lesioncount.infer import models_dir  # noqa: E402
from lesioncount.train.targets import make_density, make_targets  # noqa: E402
from lesioncount.types import ModelSpec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_targets_from_known_boxes() -> None:
    heat, log_size, weight = make_targets((32, 48), [(11.0, 7.0, 6.0, 4.0, 0), (40.0, 20.0, 2.0, 2.0, 2)], 3, 2)
    assert heat.shape == (3, 16, 24) and log_size.shape == (2, 16, 24) and weight.shape == (16, 24)
    # Input pixel 11 covers [11, 12): its centre 11.5 is output pixel 5.25 -> peak at (x=5, y=3).
    assert heat[0, 3, 5] == 1.0 and heat[0].max() == 1.0 and (heat[0] == 1).sum() == 1
    assert heat[2, 10, 20] == 1.0 and heat[1].max() == 0.0
    np.testing.assert_allclose(log_size[:, 3, 5], np.log([6.0, 4.0]))
    assert weight.sum() == 2 and weight[3, 5] == 1
    # Off-grid centres are ignored, not wrapped.
    h2, _, w2 = make_targets((32, 32), [(-5.0, 3.0, 4.0, 4.0, 0)], 3, 2)
    assert h2.max() == 0 and w2.sum() == 0


def test_density_sums_to_the_lesions_of_the_chosen_classes() -> None:
    # Two acne lesions well inside, one scar (not counted), one acne lesion half off the right edge.
    centres = [
        (21.0, 21.0, 6.0, 6.0, 0),
        (60.0, 40.0, 16.0, 12.0, 1),
        (40.0, 60.0, 8.0, 8.0, 2),
        (95.0, 30.0, 20.0, 20.0, 0),
    ]
    dens = make_density((80, 96), centres, (0, 1), 2)
    assert dens.shape == (1, 40, 48) and dens.min() >= 0
    # Each lesion inside adds a mass of 1; the cut one adds less than 1 but more than 0.
    inner = make_density((80, 96), centres[:3], (0, 1), 2)
    assert abs(float(inner.sum()) - 2.0) < 1e-4
    assert 2.1 < float(dens.sum()) < 3.0
    # Its mass sits at its centre: output pixel (x / 2 - 0.5, y / 2 - 0.5).
    one = make_density((80, 96), centres[:1], (0, 1), 2)
    assert np.unravel_index(one[0].argmax(), one[0].shape) == (10, 10)
    assert make_density((80, 96), centres, (2,), 2).sum() == pytest.approx(1.0, abs=1e-4)


def test_config_unknown_key_suggests(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("stpes: 10\n")
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        load_yaml(TrainConfig, p)
    p.write_text("steps: ten\n")
    with pytest.raises(ConfigError, match="steps must be a whole number"):
        load_yaml(TrainConfig, p)
    p.write_text("steps: 10\n")
    assert load_yaml(TrainConfig, p, {"lr": 0.5}).lr == 0.5


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("steps: true", "steps must be a whole number, got True"),
        ("batch_size: 2.5", "batch_size must be a whole number"),
        ("lr: yes", "lr must be a number"),
        ("name: 12", "name must be text"),
        ("bf16: 1", "bf16 must be true or false"),
        ("crop_px: 100", "crop_px must be a multiple of 16"),
        ("val_fraction: 1.5", "val_fraction must be between 0 and 1"),
        ("ema_decay: 1.0", "ema_decay must be in [0, 1)"),
        ("scar_prob: 2", "scar_prob must be a probability"),
        ("steps: 0", "steps must be 1 or more"),
        ("extra_half: 3", "extra_half must be 0 (all), 1 or 2"),
        ("extra_repeat: 0", "extra_repeat must be 1 or more"),
        ("class_map: {papule: pustule}", "class map papule=pustule: a label maps to one of inflammatory, comedone"),
    ],
)
def test_config_values_are_checked(tmp_path: Path, text: str, words: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(text + "\n")
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_yaml(TrainConfig, p)


@pytest.mark.slow
def test_tiny_training_lowers_loss_resumes_and_exports(tmp_path: Path) -> None:
    from lesioncount.train.export import ExportError, calibration_tiles, export_onnx, quantize_int8
    from lesioncount.train.loop import train

    over = {"out_dir": str(tmp_path / "run"), "steps": 80, "checkpoint_every_s": 0}
    cfg = load_yaml(TrainConfig, ROOT / "configs" / "tiny.yaml", over)

    def crash_at_50(step: int, total: int, rec: dict[str, float]) -> None:
        if step == 50:
            raise KeyboardInterrupt  # a killed run: last.pt already holds step 50

    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=crash_at_50)
    final = train(cfg)  # resumes
    logs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in logs if "loss" in r]
    losses = [r["loss"] for r in logs if "loss" in r]
    assert steps == [50, 80]  # resumed at 50, not restarted
    assert losses[-1] < losses[0]
    state = torch.load(final, weights_only=False)
    assert set(state["thresholds"]) == {"inflammatory", "comedone", "scar"}

    onnx_path = tmp_path / "tiny.onnx"
    spec, diff = export_onnx(final, onnx_path, version="test")
    assert diff <= 1e-4
    m = onnx.load(str(onnx_path))
    assert m.opset_import[0].version >= 17
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims][2:] == ["height", "width"]
    meta = {p.key: p.value for p in m.metadata_props}
    assert ModelSpec.from_metadata(meta) == spec
    q = tmp_path / "tiny.int8.onnx"
    d8 = quantize_int8(onnx_path, q, calibration_tiles([], n_tiles=4, tile_px=64))
    assert d8.max_abs_diff < 0.1 and d8.fp32_count >= 0 and d8.int8_count >= 0
    # Export refuses an int8 model whose count moves more than the limit (a limit below any change).
    if d8.fp32_count >= 20 and d8.int8_count != d8.fp32_count:
        with pytest.raises(ExportError, match="int8 model counts"):
            quantize_int8(onnx_path, q, calibration_tiles([], n_tiles=4, tile_px=64), max_count_change=0.0)
    assert ModelSpec.from_metadata({p.key: p.value for p in onnx.load(str(q)).metadata_props}) == spec


def test_shipped_models_carry_complete_contracts() -> None:
    from lesioncount.infer import DEFAULT_MODEL_STEM

    specs = []
    for name in (f"{DEFAULT_MODEL_STEM}.onnx", f"{DEFAULT_MODEL_STEM}.int8.onnx"):
        path = models_dir() / name
        assert path.is_file(), f"{name} is not shipped"
        assert path.stat().st_size < 20 * 1024 * 1024
        m = onnx.load(str(path))
        meta = {p.key: p.value for p in m.metadata_props}
        assert "lesioncount.flip_average" in meta  # how the thresholds were calibrated is stated, not implied
        spec = ModelSpec.from_metadata(meta)  # raises on a missing key
        assert spec.classes == ("inflammatory", "comedone", "scar")
        assert all(0 < t < 1 for t in spec.thresholds.values())
        assert "ACNE04" in spec.training_data
        specs.append(spec)
    fp32, int8 = specs
    # The int8 twin runs as its fp32 model does; only its acne threshold may differ (matched to fp32's count).
    assert (int8.version, int8.flip_average, int8.heat_sigma, int8.count_softness, int8.thresholds["scar"]) == (
        fp32.version,
        fp32.flip_average,
        fp32.heat_sigma,
        fp32.count_softness,
        fp32.thresholds["scar"],
    )
    assert abs(int8.thresholds["inflammatory"] - fp32.thresholds["inflammatory"]) <= 0.05
    card = (models_dir() / "MODEL_CARD.md").read_text()
    assert f"lesioncount-unet24 {fp32.version}" in card  # the card describes the shipped version


@pytest.mark.slow
def test_init_from_starts_from_the_given_weights(tmp_path: Path) -> None:
    from lesioncount.train.loop import train

    base = {"steps": 5, "checkpoint_every_s": 1e9}
    # A large learning rate, so that five steps move the weights well away from a fresh start.
    first = train(
        load_yaml(TrainConfig, ROOT / "configs" / "tiny.yaml", {**base, "lr": 0.05, "out_dir": str(tmp_path / "a")})
    )
    # One step at a vanishing learning rate: the result is the starting point.
    over = {**base, "steps": 1, "lr": 1e-12, "out_dir": str(tmp_path / "b"), "init_from": str(first)}
    second = train(load_yaml(TrainConfig, ROOT / "configs" / "tiny.yaml", over))
    a = torch.load(first, weights_only=False)["model"]
    b = torch.load(second, weights_only=False)["model"]
    conv = "head_hm.1.weight"
    assert torch.allclose(a[conv], b[conv], atol=1e-6)
    fresh = train(
        load_yaml(
            TrainConfig, ROOT / "configs" / "tiny.yaml", {**over, "init_from": "", "out_dir": str(tmp_path / "c")}
        )
    )
    assert not torch.allclose(a[conv], torch.load(fresh, weights_only=False)["model"][conv], atol=1e-3)


def test_one_threshold_rule_for_both_calibrations() -> None:
    """Known answer: the threshold whose counts give the most right grades wins; count r breaks ties."""
    from lesioncount.train.calibrate import choose_acne_threshold

    scores = [[0.9, 0.8, 0.3], [0.9] * 8 + [0.2] * 20, [0.5] * 25]
    grades = [0, 1, 2]  # Hayashi: 0-5 lesions grade 0, 6-20 grade 1, 21-50 grade 2
    counts = lambda t: [sum(s >= t for s in row) for row in scores]  # noqa: E731
    acc, r, best, table = choose_acne_threshold(counts, [3, 8, 25], grades, [0.1, 0.4, 0.6])
    # 0.1: 3, 28, 25 -> grades 0, 2, 2 (2 right); 0.4: 2, 8, 25 -> 0, 1, 2 (3 right); 0.6: 2, 8, 0 (2 right)
    assert best == 0.4 and acc == 1.0 and [row[0] for row in table] == [2 / 3, 1.0, 2 / 3]
    assert r > 0.99


def test_int8_threshold_matches_the_fp32_total() -> None:
    """Known answer: int8 scores a little higher, so its threshold rises until the totals agree."""
    from lesioncount.train.calibrate import match_threshold

    fp32 = [np.array([0.50, 0.30, 0.16, 0.15]), np.array([0.12, 0.14])]  # at 0.15: 4 peaks
    int8 = [s + 0.01 for s in fp32] + [np.array([0.151])]  # one extra weak peak on top
    assert sum(int((s >= 0.15).sum()) for s in fp32) == 4
    t = match_threshold(int8, 4, 0.15)
    assert sum(int((s >= t).sum()) for s in int8) == 4 and 0.15 < t <= 0.17
    # Nothing to change: the centre itself is kept.
    assert match_threshold(fp32, 4, 0.15) == 0.15


def test_set_acne_threshold_rewrites_only_the_acne_classes(tmp_path: Path) -> None:
    from toy_model import make_toy_model

    from lesioncount.train.calibrate import set_acne_threshold

    path = make_toy_model(tmp_path / "toy.onnx")
    before = ModelSpec.from_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})
    set_acne_threshold(path, 0.2125)
    after = ModelSpec.from_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})
    assert after.thresholds == before.thresholds | {"inflammatory": 0.2125, "comedone": 0.2125}
    assert after.thresholds["scar"] == before.thresholds["scar"]


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("lesioncount.output_stride", "3", "output_stride must be 1, 2, 4 or 8"),
        ("lesioncount.std", "[0.2, 0.0, 0.2]", "std > 0"),
        ("lesioncount.thresholds", '{"inflammatory": 0.2}', "thresholds must give each class"),
        ("lesioncount.thresholds", '{"inflammatory": 1.5, "comedone": 0.2, "scar": 0.3}', "thresholds"),
        ("lesioncount.tile_px", "1000", "multiples of 16"),
        ("lesioncount.tile_overlap_px", "1024", "must be under tile_px"),
        ("lesioncount.face_height_px", "-5", "face_height_px must be positive"),
        ("lesioncount.mean", "not json", "malformed"),
        ("lesioncount.heat_sigma", "4", "heat_sigma must be between 0 and 3"),
        ("lesioncount.heat_sigma", "-0.5", "heat_sigma must be between 0 and 3"),
        ("lesioncount.count_softness", "-0.01", "count_softness must be 0"),
        ("lesioncount.count_softness", "0.5", "count_softness must be 0"),
        ("lesioncount.count_softness", "nan", "count_softness must be 0"),
        ("lesioncount.expert_threshold", "1.5", "expert_threshold must be 0"),
        ("lesioncount.expert_threshold", "-0.1", "expert_threshold must be 0"),
    ],
)
def test_model_contract_values_are_checked_on_load(key: str, value: str, words: str) -> None:
    from lesioncount.infer import resolve_model_path

    meta = {p.key: p.value for p in onnx.load(str(resolve_model_path())).metadata_props}
    assert ModelSpec.from_metadata(meta).input_multiple == 16
    with pytest.raises(ValueError, match=words):
        ModelSpec.from_metadata(meta | {key: value})


def test_int8_check_refuses_a_model_whose_count_moves(tmp_path: Path) -> None:
    """The export's int8 verification, on two toy models: one finds every planted spot, the other fewer."""
    from toy_model import make_toy_model, red_blob

    from lesioncount.train.dataset import normalise
    from lesioncount.train.export import ExportError, _check_int8

    rng = np.random.default_rng(0)
    tiles = []
    for _ in range(6):
        img = np.full((128, 128, 3), 170, np.uint8)
        for _ in range(5):
            img = red_blob(img, *rng.uniform(16, 112, 2), float(rng.uniform(1.5, 4)))
        tiles.append(normalise(img)[None])
    good = make_toy_model(tmp_path / "a.onnx")
    same = _check_int8(good, good, tiles, 0.0)
    assert same.fp32_count >= 20 and same.int8_count == same.fp32_count and same.max_abs_diff == 0.0
    weaker = make_toy_model(tmp_path / "b.onnx", gain=0.8)  # stands in for an int8 model that loses peaks
    with pytest.raises(ExportError, match="int8 model counts"):
        _check_int8(good, weaker, tiles, 0.05)


class _NotAWeight:
    """Stands in for arbitrary pickled code inside a checkpoint."""


def test_checkpoints_load_without_running_pickled_code(tmp_path: Path) -> None:
    import pickle

    from lesioncount.train.checkpoint import load_checkpoint_file

    torch.save({"model": {"w": torch.zeros(2)}, "thresholds": {"scar": np.float64(0.3)}}, tmp_path / "ok.pt")
    assert float(load_checkpoint_file(tmp_path / "ok.pt")["thresholds"]["scar"]) == 0.3
    torch.save({"model": {}, "payload": _NotAWeight()}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a lesioncount training checkpoint") as refused:
        load_checkpoint_file(tmp_path / "bad.pt")
    assert isinstance(refused.value.__cause__, pickle.UnpicklingError)  # refused by torch's safe loader


def test_a_refused_int8_model_does_not_replace_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from toy_model import make_toy_model

    import lesioncount.train.export as export
    from lesioncount.train.export import ExportError, calibration_tiles, quantize_int8

    fp32 = make_toy_model(tmp_path / "toy.onnx")
    out = tmp_path / "toy.int8.onnx"
    out.write_bytes(b"the int8 model shipped before")

    def refuse(*args: object, **kw: object) -> None:
        raise ExportError("the int8 model counts +9% against fp32 (test)")

    monkeypatch.setattr(export, "_check_int8", refuse)
    with pytest.raises(ExportError):
        quantize_int8(fp32, out, calibration_tiles([], n_tiles=2, tile_px=64))
    assert out.read_bytes() == b"the int8 model shipped before"


def test_point_labels_train_on_one_fixed_half(tmp_path: Path) -> None:
    from lesioncount.data import split_half
    from lesioncount.train.dataset import load_point_items

    names = [f"levle{k % 4}_{k}_jpg.rf.{k:032x}.jpg" for k in range(40)]
    doc = {
        "images": [{"id": i, "file_name": n, "width": 64, "height": 64} for i, n in enumerate(names)],
        "categories": [{"id": 1, "name": "acne"}],
        "annotations": [
            {"id": i, "image_id": i, "category_id": 1, "point": [10.0 + i, 20.0], "radius": 3.0}
            for i in range(len(names))
        ],
    }
    (tmp_path / "points.coco.json").write_text(json.dumps(doc))
    halves = [load_point_items(tmp_path / "points.coco.json", h) for h in (1, 2)]
    every = load_point_items(tmp_path / "points.coco.json")
    # The halves split the faces with nothing in both, and follow split_half (a stable hash, not the order).
    assert len(halves[0]) + len(halves[1]) == len(every) == 40 and halves[0] and halves[1]
    assert not {i.source_id for i in halves[0]} & {i.source_id for i in halves[1]}
    assert all(split_half(Path(i.path).name) == 1 for i in halves[0])
    # Each point becomes an inflammatory lesion with a 2r x 2r box at its centre.
    first = next(i for i in every if i.path.endswith(names[0]))
    assert first.lesions == ((10.0, 20.0, 6.0, 6.0, 0),) and first.path == str(tmp_path / names[0])


@pytest.mark.parametrize("heat_sigma", [None, 0.7])
def test_calibration_reads_the_planted_check_as_the_pipeline_counts_it(heat_sigma: float | None) -> None:
    """The soft-count calibration's shortcut (one count of the planted-lesion photo, then every threshold and
    softness from its peaks) gives exactly the recall that counting the photo at that operating point gives."""
    from lesioncount.infer import resolve_model_path
    from lesioncount.matching import match_centres
    from lesioncount.pipeline import LesionCounter
    from lesioncount.synth import PLANTED_CHECK_PLAN, PLANTED_CHECK_SEED, PLANTED_CHECK_UPSCALE, planted_photo
    from lesioncount.train.calibrate import planted_recall
    from lesioncount.types import ACNE_CLASSES

    model = resolve_model_path()
    recall = planted_recall(model, 0.04, threads=2, heat_sigma=heat_sigma)
    image, planted = planted_photo(PLANTED_CHECK_SEED, upscale=PLANTED_CHECK_UPSCALE, plan=PLANTED_CHECK_PLAN)
    targets = [p for p in planted if p.cls == "inflammatory"]
    for threshold, softness in ((0.13, 0.0), (0.155, 0.03), (0.2, 0.02)):
        counter = LesionCounter(model, threads=2, count_softness=softness, heat_sigma=heat_sigma)
        counter.thresholds |= dict.fromkeys(ACNE_CLASSES, threshold)
        marks = counter.count(image).lesions
        tolerance = [1.5 * p.radius + 4 for p in targets]
        hits = match_centres([(m.x, m.y) for m in marks], [(p.x, p.y) for p in targets], tolerance)[0]
        assert recall(threshold, softness) == len(hits) / len(targets), threshold


def _sprinkle(image: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Salt-and-pepper noise on ``n`` pixels, as Roboflow's augmented ACNE04 copies carry."""
    rng = np.random.default_rng(seed)
    out = image.copy()
    ys, xs = rng.integers(0, image.shape[0], n), rng.integers(0, image.shape[1], n)
    out[ys, xs] = np.where(rng.random(n) < 0.5, 0, 255)[:, None]
    return out


def test_noise_speckles_are_found_on_sprinkled_photos_only(astronaut: np.ndarray) -> None:
    from lesioncount.train.calibrate import MAX_SPECKLES, noise_speckles

    bgr = np.ascontiguousarray(astronaut[..., ::-1])
    clean = noise_speckles(bgr)
    assert clean <= MAX_SPECKLES  # a real photo, edges, hair and all
    sprinkled = noise_speckles(_sprinkle(bgr, 300))
    assert sprinkled >= clean + 100  # half of the 300 pixels at least (on black space or the white suit many hide)


def test_calibration_can_leave_out_the_speckled_held_out_copies(tmp_path: Path, astronaut: np.ndarray) -> None:
    import cv2

    from lesioncount.data import ImageAnnotation, RefLesion, write_voc_file
    from lesioncount.train.calibrate import _held_out_faces

    bgr = np.ascontiguousarray(astronaut[..., ::-1])
    photos = {"levle1_1_jpg.rf.a.jpg": bgr, "levle1_2_jpg.rf.b.jpg": _sprinkle(bgr, 300)}
    for name, image in photos.items():
        cv2.imwrite(str(tmp_path / name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        lesions = (RefLesion("inflammatory", 50.0, 60.0, (45.0, 55.0, 10.0, 10.0)),)
        write_voc_file(tmp_path / name.replace(".jpg", ".xml"), ImageAnnotation(name, 512, 512, lesions))
    cfg = TrainConfig(data_dir=str(tmp_path), val_fraction=1.0)
    kept, grades = _held_out_faces(cfg, skip_speckled=True)
    assert [Path(i.path).name for i in kept] == ["levle1_1_jpg.rf.a.jpg"] and grades == [1]
    assert len(_held_out_faces(cfg)[0]) == 2  # every held-out photo unless asked
    (tmp_path / "levle1_1_jpg.rf.a.jpg").write_bytes((tmp_path / "levle1_2_jpg.rf.b.jpg").read_bytes())
    with pytest.raises(ValueError, match="without --skip-speckled"):
        _held_out_faces(cfg, skip_speckled=True)


def test_calibration_reports_its_faces_and_the_accuracys_interval_by_face() -> None:
    from lesioncount.train.calibrate import held_out_uncertainty
    from lesioncount.train.dataset import Item

    # 20 faces, three copies each (as Roboflow exports them); the count grades the odd faces right.
    items = [Item(f"train/levle1_{f}_jpg.rf.{c}.jpg", f"levle1_{f}", ()) for f in range(20) for c in ("a", "b", "c")]
    counts = [10 if f % 2 else 2 for f in range(20) for _ in range(3)]  # 10 lesions: grade 1; 2: grade 0
    out = held_out_uncertainty(items, counts, [1] * 60)
    assert out["held_out_faces"] == 20
    lo, hi = out["hayashi_ci95"]
    assert lo < 0.5 < hi
    assert hi - lo > 0.3  # 20 faces (about +-0.22), not 60 photos (about +-0.13)


@pytest.mark.parametrize("steps", [1, 2, 3, 10, 11, 24, 25, 200])
def test_the_schedule_runs_any_step_budget(steps: int) -> None:
    import torch

    from lesioncount.train.loop import one_cycle

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = one_cycle(opt, 0.1, steps)
    lrs = []
    for _ in range(steps):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert all(0 < lr <= 0.1 for lr in lrs[:-1]) and max(lrs) <= 0.1
    if steps >= 25:  # long runs keep the 10% warm-up they were tuned with
        assert sched.total_steps == steps and sched._schedule_phases[0]["end_step"] == 0.1 * steps - 1


def test_commands_given_the_wrong_kind_of_model_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lesioncount.cli import main
    from lesioncount.infer import models_dir

    shipped = models_dir() / "lesioncount-unet24.onnx"
    junk = tmp_path / "model.pt"
    junk.write_bytes(b"\x00\x01 not a checkpoint")
    assert main(["export", str(shipped), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "this is an ONNX model; give the training checkpoint (.pt)" in capsys.readouterr().err
    assert main(["export", str(junk), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "model.pt: not a lesioncount training checkpoint" in capsys.readouterr().err
    assert main(["calibrate", str(junk)]) == 2
    assert "not a lesioncount training checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_training_without_labelled_photos_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lesioncount.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        (ROOT / "configs" / "tiny.yaml").read_text().replace("synthetic_only: true", "synthetic_only: false")
    )
    (tmp_path / "data").mkdir()
    args = ["train", "--config", str(cfg), "--data-dir", str(tmp_path / "data"), "--out-dir", str(tmp_path / "run")]
    assert main([*args, "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'data'}: no Pascal VOC .xml labels beside its photos" in err and "Traceback" not in err


@pytest.mark.parametrize(("fp32_count", "warned"), [(0, True), (12, False)])
def test_an_int8_check_that_compared_nothing_says_so(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fp32_count: int,
    warned: bool,
) -> None:
    from types import SimpleNamespace

    from lesioncount.cli import main
    from lesioncount.train import export

    spec = SimpleNamespace(thresholds={"inflammatory": 0.3}, face_height_px=500.0)
    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: (spec, 1e-7))
    monkeypatch.setattr(export, "calibration_tiles", lambda *a, **k: [])
    monkeypatch.setattr(export, "quantize_int8", lambda *a, **k: export.Int8Check(0.01, fp32_count, fp32_count))
    assert main(["export", "final.pt", "--out", str(tmp_path / "m.onnx"), "--int8"]) == 0
    assert ("compared nothing" in capsys.readouterr().err) is warned
