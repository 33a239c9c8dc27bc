"""Two networks as one model (``lesioncount.train.ensemble``): the first on the image, the second on its mirror."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from toy_model import make_toy_model  # noqa: E402

from lesioncount.cli import main  # noqa: E402
from lesioncount.infer import Predictor  # noqa: E402
from lesioncount.train.ensemble import ensemble_onnx  # noqa: E402
from lesioncount.types import ModelSpec  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "lesioncount-unet24.onnx"


def _maps(path: Path, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(["maps"], {s.get_inputs()[0].name: x})[0]


def test_ensemble_averages_the_first_on_the_image_and_the_second_on_the_mirror(tmp_path: Path) -> None:
    a = make_toy_model(tmp_path / "a.onnx", gain=12.0, bias=2.5)
    b = make_toy_model(tmp_path / "b.onnx", gain=5.0, bias=0.5)
    spec = ensemble_onnx(a, b, tmp_path / "ab.onnx", version="9.9.9")
    assert spec.version == "9.9.9" and not spec.flip_average
    x = np.random.default_rng(0).random((1, 3, 64, 96)).astype(np.float32)
    want = 0.5 * (_maps(a, x) + _maps(b, x[..., ::-1].copy())[..., ::-1])
    got = _maps(tmp_path / "ab.onnx", x)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-6
    # Not either network alone: the second network's maps count.
    assert np.abs(got - _maps(a, x)).max() > 1e-2


def test_refuses_models_of_different_contracts(tmp_path: Path) -> None:
    a = make_toy_model(tmp_path / "a.onnx")
    b = make_toy_model(tmp_path / "b.onnx")
    model = onnx.load(str(b))
    spec = ModelSpec.from_metadata({p.key: p.value for p in model.metadata_props})
    del model.metadata_props[:]
    for k, v in dataclasses.replace(spec, mean=(0.5, 0.5, 0.5)).to_metadata().items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.save(model, str(b))
    with pytest.raises(ValueError, match="mean"):
        ensemble_onnx(a, b, tmp_path / "ab.onnx")
    assert not (tmp_path / "ab.onnx").exists()


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped model")
def test_the_shipped_model_with_itself_is_its_flip_average(tmp_path: Path) -> None:
    """The graph's mirror is the predictor's: one network twice gives flip averaging's maps exactly, with the
    experts' heatmap still there (from the image alone)."""
    out = tmp_path / "self.onnx"
    ensemble_onnx(SHIPPED, SHIPPED, out)
    image = (np.random.default_rng(1).random((200, 300, 3)) * 255).astype(np.uint8)
    shipped, both = Predictor(SHIPPED, threads=1), Predictor(out, threads=1)
    assert shipped.flip_average and not both.flip_average
    heat_a, size_a, experts_a = shipped.predict_all(image)
    heat_b, size_b, experts_b = both.predict_all(image)
    assert np.abs(heat_a - heat_b).max() < 1e-5
    assert np.abs(size_a - size_b).max() < 1e-5
    assert experts_a is not None and experts_b is not None and experts_a.shape == experts_b.shape


def test_cli_writes_the_ensemble(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_toy_model(tmp_path / "a.onnx")
    b = make_toy_model(tmp_path / "b.onnx", gain=5.0)
    out = tmp_path / "ab.onnx"
    assert main(["ensemble", str(a), str(b), "--write", str(out)]) == 0
    assert "on its mirror" in capsys.readouterr().out
    assert Predictor(out).spec.name == "toy"
    assert main(["ensemble", str(a), str(tmp_path / "missing.onnx"), "--write", str(out)]) == 2


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped model")
def test_the_first_network_loads_back_from_an_ensemble(tmp_path: Path) -> None:
    """``network_from_onnx`` (what `train-experts` trains beside) reads the first network, never the second's
    convolutions of the same names."""
    torch = pytest.importorskip("torch")
    from onnx import numpy_helper

    from lesioncount.train.onnx_import import network_from_onnx

    other = onnx.load(str(SHIPPED))
    for t in other.graph.initializer:
        if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 4:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * 0.5, t.name))
    onnx.save(other, str(tmp_path / "other.onnx"))
    ensemble_onnx(SHIPPED, tmp_path / "other.onnx", tmp_path / "ens.onnx")
    want = network_from_onnx(SHIPPED).state_dict()
    got = network_from_onnx(tmp_path / "ens.onnx").state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert not torch.equal(
        network_from_onnx(tmp_path / "other.onnx").state_dict()["enc0.0.0.weight"], want["enc0.0.0.weight"]
    )


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped model")
def test_train_experts_refuses_an_ensemble(tmp_path: Path) -> None:
    """The model written with the branch holds one network: an ensemble's second would be lost silently."""
    pytest.importorskip("torch")
    from lesioncount.train.expert import train_expert_branch

    ensemble_onnx(SHIPPED, SHIPPED, tmp_path / "ens.onnx")
    with pytest.raises(ValueError, match="ensemble"):
        train_expert_branch(tmp_path / "ens.onnx", tmp_path / "none.json", tmp_path / "run")
    assert not (tmp_path / "run").exists()
