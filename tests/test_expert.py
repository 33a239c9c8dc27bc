"""The experts' heatmap: shipped weights back into torch, a branch trained beside the frozen network,
exported with both outputs, calibrated, and counted with (counts unchanged, expert-style marks added)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from lesioncount.infer import resolve_model_path  # noqa: E402
from lesioncount.types import ModelSpec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_weights_load_back_into_torch_exactly() -> None:
    import onnxruntime as ort

    from lesioncount.train.onnx_import import network_from_onnx

    path = resolve_model_path()
    net = network_from_onnx(path)
    x = np.random.default_rng(3).standard_normal((1, 3, 96, 128)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-4


def test_weights_of_another_architecture_are_refused() -> None:
    from lesioncount.train.model import create_model
    from lesioncount.train.onnx_import import load_onnx_weights

    with pytest.raises(ValueError, match="shape"):
        load_onnx_weights(create_model("unet16"), resolve_model_path())


@pytest.fixture(scope="module")
def planted_points(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four photos of planted acne (two source faces each in both halves' sense) and their points as COCO."""
    from lesioncount.synth import planted_photo

    folder = tmp_path_factory.mktemp("points")
    images, annotations = [], []
    for i in range(4):
        image, planted = planted_photo(i, upscale=2)
        name = f"levle1_{i}_jpg.rf.{i:032x}.jpg"
        cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        images.append({"id": i, "file_name": name, "width": image.shape[1], "height": image.shape[0]})
        for p in planted:
            if p.cls in ("inflammatory", "comedone"):
                annotations.append(
                    {"id": len(annotations), "image_id": i, "category_id": 1, "point": [p.x, p.y], "radius": p.radius}
                )
    doc = {"images": images, "categories": [{"id": 1, "name": "acne"}], "annotations": annotations}
    (folder / "points.coco.json").write_text(json.dumps(doc))
    return folder / "points.coco.json"


def test_branch_trains_resumes_exports_calibrates_and_counts(tmp_path: Path, planted_points: Path) -> None:
    import jsonschema

    from lesioncount.pipeline import LesionCounter
    from lesioncount.train.calibrate import calibrate_expert_threshold
    from lesioncount.train.expert import export_expert_model, train_expert_branch
    from lesioncount.train.export import update_contract
    from lesioncount.types import CountResult

    shipped = resolve_model_path()
    out = tmp_path / "run"
    kw = {"half": 0, "calib_fraction": 0.5, "batch_size": 2, "crop_px": 128, "threads": 1}
    train_expert_branch(shipped, planted_points, out, steps=2, **kw)
    final = train_expert_branch(shipped, planted_points, out, steps=4, **kw)  # resumes at step 2
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]
    split = json.loads((out / "split.json").read_text())
    assert split["train"] and split["calibration"] and not set(split["train"]) & set(split["calibration"])

    model = tmp_path / "experts.onnx"
    # The network's own output is bit for bit the shipped one's: counts, grades and marks cannot move.
    assert export_expert_model(shipped, final, model) == 0.0
    assert [o.name for o in onnx.load(str(model)).graph.output] == ["maps", "experts"]

    res = calibrate_expert_threshold(model, planted_points, split["calibration"], threads=1)
    spec = ModelSpec.from_metadata({p.key: p.value for p in onnx.load(str(model)).metadata_props})
    assert spec.expert_threshold == res["threshold"] > 0 and res["points"] > 0
    assert 0.0 <= res["f1"] <= 1.0 and len(res["table"]) > 10

    update_contract(model, expert_threshold=0.1)
    photo = Path(split["calibration"][0])
    plain = LesionCounter(shipped, threads=1).count(photo)
    both = LesionCounter(model, threads=1).count(photo)
    assert both.counts == plain.counts and both.lesions == plain.lesions and both.grades == plain.grades
    assert both.expert_marks
    assert all(m.cls == "acne" and m.score >= 0.1 for m in both.expert_marks)
    d = both.to_dict()
    jsonschema.validate(d, json.loads((ROOT / "lesioncount/schema/count_result.v1.json").read_text()))
    assert CountResult.from_dict(d).expert_marks == tuple(type(m).from_dict(m.to_dict()) for m in both.expert_marks)
    # At a higher threshold, fewer marks and never new ones.
    update_contract(model, expert_threshold=0.5)
    fewer = LesionCounter(model, threads=1).count(photo).expert_marks
    assert {(m.x, m.y) for m in fewer} <= {(m.x, m.y) for m in both.expert_marks}
    # A threshold of 0 in the contract: the branch is not used, and no expert-style marks are given.
    update_contract(model, expert_threshold=0.0)
    assert LesionCounter(model, threads=1).count(photo).expert_marks == ()


def test_calibration_refuses_a_model_without_the_experts_output(tmp_path: Path, planted_points: Path) -> None:
    from lesioncount.train.calibrate import calibrate_expert_threshold

    photo = planted_points.with_name(json.loads(planted_points.read_text())["images"][0]["file_name"])
    bare = _without_branch(resolve_model_path(int8=True), tmp_path / "bare.int8.onnx")
    with pytest.raises(ValueError, match="no 'experts' output"):
        calibrate_expert_threshold(bare, planted_points, [photo], threads=1)


def test_train_experts_command_writes_a_calibrated_model(tmp_path: Path, planted_points: Path) -> None:
    from lesioncount.cli import main

    model = tmp_path / "m.onnx"
    args = ["train-experts", str(resolve_model_path()), "--points", str(planted_points), "--steps", "2"]
    # The four planted photos' source faces all fall in half 2 (lesioncount.data.split_half).
    int8_in = _without_branch(resolve_model_path(int8=True), tmp_path / "bare.int8.onnx")
    int8_out = tmp_path / "m.int8.onnx"
    rc = main(
        [*args, "--half", "2", "--out", str(tmp_path / "run"), "--write", str(model), "--threads", "1"]
        + ["--int8", str(int8_in), str(int8_out)]
    )
    assert rc == 0
    for path in (model, int8_out):
        spec = ModelSpec.from_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})
        assert 0 < spec.expert_threshold < 1
        assert [o.name for o in onnx.load(str(path)).graph.output] == ["maps", "experts"]
    # Points of a half with no photos: a clear error, no model written.
    rc = main([*args, "--half", "1", "--out", str(tmp_path / "run2"), "--write", str(tmp_path / "none.onnx")])
    assert rc == 2 and not (tmp_path / "none.onnx").exists()


def test_the_shipped_model_has_an_experts_heatmap_beside_an_unchanged_network() -> None:
    """Its network loads back alone (the branch's convolutions are skipped), and the maps it gives are the
    network's: the experts' branch reads the network's features and changes none of them."""
    import onnxruntime as ort

    from lesioncount.train.onnx_import import network_from_onnx

    path = resolve_model_path()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["maps", "experts"]
    x = np.random.default_rng(5).standard_normal((1, 3, 64, 96)).astype(np.float32)
    maps, experts = session.run(None, {"image": x})
    with torch.no_grad():
        want = network_from_onnx(path)(torch.from_numpy(x)).numpy()
    assert np.abs(maps - want).max() < 1e-4
    assert experts.shape == (1, 1, 32, 48) and 0 <= experts.min() <= experts.max() <= 1


def _without_branch(path: Path, out: Path) -> Path:
    """A copy of a model with its grafted experts' branch (nodes, weights, output) taken out."""
    m = onnx.load(str(path))
    nodes = [n for n in m.graph.node if not n.name.startswith("expert_branch/")]
    weights = [t for t in m.graph.initializer if not t.name.startswith("expert_branch/")]
    outputs = [o for o in m.graph.output if o.name != "experts"]
    for field, keep in ((m.graph.node, nodes), (m.graph.initializer, weights), (m.graph.output, outputs)):
        del field[:]
        field.extend(keep)
    onnx.save(m, str(out))
    return out


@pytest.mark.parametrize("quantised", [False, True])
def test_the_branch_copied_into_the_int8_twin_leaves_its_maps_alone(tmp_path: Path, quantised: bool) -> None:
    import onnxruntime as ort

    from lesioncount.train.expert import graft_expert_branch
    from lesioncount.train.export import calibration_tiles

    bare = _without_branch(resolve_model_path(int8=True), tmp_path / "bare.int8.onnx")
    grafted = tmp_path / "grafted.int8.onnx"
    tiles = calibration_tiles([], n_tiles=4, tile_px=128) if quantised else None
    graft_expert_branch(resolve_model_path(), bare, grafted, calibration_tiles=tiles)
    nodes = onnx.load(str(grafted)).graph.node
    assert any(n.name.startswith("expert_branch/") and n.op_type == "QuantizeLinear" for n in nodes) == quantised
    x = np.random.default_rng(2).standard_normal((1, 3, 96, 128)).astype(np.float32)

    def run(path: Path) -> list[np.ndarray]:
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return s.run(None, {"image": x})

    (plain,), (maps, experts), (_, experts32) = run(bare), run(grafted), run(resolve_model_path())
    assert np.array_equal(plain, maps)  # the int8 network's own output is untouched
    assert np.abs(experts - experts32).max() < 0.15  # the branch reads int8's features
    with pytest.raises(ValueError, match="already has"):
        graft_expert_branch(resolve_model_path(), grafted, tmp_path / "twice.onnx")
    with pytest.raises(ValueError, match="no 'experts' branch"):
        graft_expert_branch(bare, bare, tmp_path / "none.onnx")


def test_the_shipped_int8_twin_carries_a_quantised_branch() -> None:
    nodes = onnx.load(str(resolve_model_path(int8=True))).graph.node
    assert any(n.name.startswith("expert_branch/") and n.op_type == "QuantizeLinear" for n in nodes)
