"""Export a checkpoint to ONNX with its contract in the metadata, and verify it (checker + ORT parity).

``export_onnx`` writes an fp32 model with dynamic batch, height and width (opset 17), checks it with the
ONNX checker, and compares ONNX Runtime with torch on a fixed input (max abs difference must be within
``tolerance``, 1e-4 by default). ``quantize_int8`` makes the static QDQ int8 twin, calibrated on tiles.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch

from lesioncount.io import atomic_path
from lesioncount.train.checkpoint import load_checkpoint_file
from lesioncount.train.contract import contract_of, write_contract
from lesioncount.train.dataset import MEAN, STD, normalise, synthetic_skin
from lesioncount.train.model import LesionUNet, create_model
from lesioncount.types import CLASSES, ModelSpec

log = logging.getLogger(__name__)

TRAINING_DATA_NOTE = (
    "ACNE04 (Wu et al., ICCV 2019; free for academic use) via Roboflow Acne04 Detection v5, plus synthetic "
    "scars and post-inflammatory marks rendered on its skin; see the model card"
)


class ExportError(RuntimeError):
    """The exported model failed a check; the message gives the figures."""


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[LesionUNet, dict[str, Any]]:
    """Model (eval mode, fp32) and the checkpoint dict."""
    state = load_checkpoint_file(path)
    cfg = state.get("config", {})
    model = create_model(state.get("arch", cfg.get("arch", "unet16")), len(CLASSES))
    model.load_state_dict(state["model"])
    model.eval()
    return model, state


#: Tile side at inference (working pixels): most faces fit one tile at the working scale, so no overlap work.
DEFAULT_TILE_PX, DEFAULT_TILE_OVERLAP_PX = 1024, 64


def spec_for(
    state: dict[str, Any],
    model: LesionUNet,
    version: str,
    tile_px: int = DEFAULT_TILE_PX,
    tile_overlap_px: int = DEFAULT_TILE_OVERLAP_PX,
) -> ModelSpec:
    cfg = state.get("config", {})
    thresholds = state.get("thresholds")
    if thresholds is None:
        log.warning("checkpoint has no calibrated thresholds (not a final.pt?): using 0.3 for every class")
        thresholds = dict.fromkeys(CLASSES, 0.3)
    return ModelSpec(
        name=cfg.get("name", "lesioncount"),
        version=version,
        classes=CLASSES,
        mean=MEAN,
        std=STD,
        output_stride=model.output_stride,
        face_height_px=float(cfg.get("face_height_px", 500.0)),
        thresholds={k: float(v) for k, v in thresholds.items()},
        tile_px=tile_px,
        tile_overlap_px=tile_overlap_px,
        training_data=TRAINING_DATA_NOTE if not cfg.get("synthetic_only") else "synthetic lesions only (test model)",
        input_multiple=model.input_multiple,
        flip_average=bool(state.get("flip_average", False)),  # set by `lesioncount calibrate --flip-average`
        heat_sigma=float(state.get("heat_sigma", 0.0)),  # set by `lesioncount calibrate --heat-sigma`
    )


def _set_metadata(path: Path, spec: ModelSpec) -> None:
    m = onnx.load(str(path))
    write_contract(m, spec)
    m.doc_string = f"{spec.name} {spec.version}: acne lesion heatmaps ({', '.join(spec.classes)}) + log box size"
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def update_contract(path: str | os.PathLike[str], **changes: Any) -> ModelSpec:
    """Rewrite fields of an exported model's contract (its metadata) atomically; the weights are untouched.

    Raises:
        ValueError: the changed contract fails ``ModelSpec.check``, or the file has no contract.
    """
    model = onnx.load(str(path))
    spec = dataclasses.replace(contract_of(model), **changes)
    spec.check()
    write_contract(model, spec)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return spec


def parity(model: LesionUNet, onnx_path: Path, *, seed: int = 0, shape: tuple[int, int] = (160, 224)) -> float:
    """Max abs difference between torch and ONNX Runtime outputs on a fixed random input."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (1, 3, *shape)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return float(np.abs(ref - got).max())


def write_network(model: LesionUNet, out: Path, spec: ModelSpec, *, opset: int = 17) -> float:
    """Write a network as an ONNX model (input ``image``, output ``maps``, dynamic batch and size) with
    ``spec`` as its contract; returns the largest torch / ONNX Runtime difference on a fixed input."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter warns about its own deprecation
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, 256, 256),),
            str(out),
            input_names=["image"],
            output_names=["maps"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "maps": {0: "batch", 2: "oh", 3: "ow"}},
            opset_version=opset,
            dynamo=False,
        )
    _set_metadata(out, spec)
    return parity(model, out)


def export_onnx(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    version: str = "0.1.0",
    tolerance: float = 1e-4,
    opset: int = 17,
    tile_px: int = DEFAULT_TILE_PX,
) -> tuple[ModelSpec, float]:
    """Export and verify; returns the spec written and the measured torch/ORT max abs difference.

    Raises:
        ExportError: the contract is invalid (a tile that is not a multiple of the input multiple, say), or
            ORT and torch differ by more than ``tolerance``.
    """
    model, state = load_checkpoint(checkpoint)
    spec = spec_for(state, model, version, tile_px=tile_px)
    try:
        spec.check()
    except ValueError as e:
        raise ExportError(str(e)) from e
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    diff = write_network(model, out, spec, opset=opset)
    if diff > tolerance:
        raise ExportError(f"ONNX Runtime and torch differ by {diff:.2e} (> {tolerance:g}) on the fixed input")
    log.info("exported %s (torch vs ORT max abs diff %.2e)", out, diff)
    return spec, diff


def calibration_tiles(
    image_paths: Sequence[str | os.PathLike[str]],
    n_tiles: int = 64,
    tile_px: int = 256,
    seed: int = 0,
    face_height_px: float = 500.0,
) -> list[npt.NDArray[np.float32]]:
    """Normalised random tiles (1x3xHxW) at the working scale, or synthetic skin if no photos are given.

    Each photo is brought to the working scale the pipeline uses (its face ``face_height_px`` high, from
    the face stage), so the int8 ranges are calibrated on what the model sees at inference.
    """
    from lesioncount.face import analyse_face
    from lesioncount.io import ImageReadError, load_image
    from lesioncount.preprocess import resize, working_scale

    rng = np.random.default_rng(seed)
    tiles: list[npt.NDArray[np.float32]] = []
    scaled: dict[int, npt.NDArray[np.uint8]] = {}
    while len(tiles) < n_tiles:
        if image_paths:
            k = int(rng.integers(len(image_paths)))
            if k not in scaled:
                try:
                    img = load_image(image_paths[k]).image
                except ImageReadError:
                    img = synthetic_skin((tile_px + 32, tile_px + 32), rng)
                scale = working_scale(analyse_face(img).height_px, img.shape[:2], face_height_px)
                img = resize(img, scale)
                scaled[k] = img if min(img.shape[:2]) >= tile_px else resize(img, tile_px / min(img.shape[:2]))
            img = scaled[k]
        else:
            img = synthetic_skin((tile_px + 32, tile_px + 32), rng)
        y = int(rng.integers(0, img.shape[0] - tile_px + 1))
        x = int(rng.integers(0, img.shape[1] - tile_px + 1))
        tiles.append(normalise(img[y : y + tile_px, x : x + tile_px])[None])
    return tiles


#: Export refuses an int8 model whose total count on the calibration tiles moves more than this.
MAX_INT8_COUNT_CHANGE = 0.05
#: ... judged only when fp32 finds at least this many lesions there.
MIN_PEAKS_FOR_CHECK = 20


def static_qdq(
    src: Path, dst: Path, feeds: Iterable[dict[str, npt.NDArray[np.float32]]], keep_float: Sequence[str]
) -> None:
    """ONNX Runtime static quantisation as every int8 model here is made: QDQ format, per-channel int8
    weights, uint8 activations, calibrated on ``feeds`` (input name -> array); the nodes named in
    ``keep_float`` stay in float."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it: Iterator[dict[str, npt.NDArray[np.float32]]] = iter(feeds)

        def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
            return next(self.it, None)

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(keep_float),
    )


def quantize_int8(
    fp32_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    tiles: list[npt.NDArray[np.float32]],
    max_count_change: float = MAX_INT8_COUNT_CHANGE,
) -> Int8Check:
    """Static QDQ int8 quantisation calibrated on ``tiles``, then verified on them against fp32.

    Raises:
        ExportError: the int8 total count differs from fp32's by more than ``max_count_change``.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, out = Path(fp32_path), Path(out)
    model = onnx.load(str(fp32_path))
    meta = {p.key: p.value for p in model.metadata_props}
    # Keep the heads' last convolutions, the sigmoid and the concat in float: quantising the joint output
    # tensor (heatmaps in [0, 1] beside log sizes up to ~4) would round heatmaps to steps of ~0.02,
    # flattening peaks into plateaus and moving counts a lot; these nodes cost almost nothing.
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        nodes = onnx.load(str(pre)).graph.node
        out_name = model.graph.output[0].name
        final = {n.name for n in nodes if out_name in n.output or n.op_type == "Sigmoid"}
        feeds = {i for n in nodes if n.name in final for i in n.input}
        keep_float = sorted(final | {n.name for n in nodes if n.op_type == "Conv" and set(n.output) & feeds})
        log.info("kept in float: %s", keep_float)
        candidate = Path(tmp) / "int8.onnx"
        static_qdq(pre, candidate, ({"image": t} for t in tiles), keep_float)
        m = onnx.load(str(candidate))
        del m.metadata_props[:]
        for k, v in meta.items():
            m.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
        onnx.save(m, str(candidate))
        # Checked before it takes the place of ``out``: a refused model never replaces a good one.
        check = _check_int8(fp32_path, candidate, tiles, max_count_change)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as dest:
            shutil.copyfile(candidate, dest)
    return check


@dataclass(frozen=True)
class Int8Check:
    """int8 against fp32 on the calibration tiles: heatmap difference and lesion counts at the thresholds."""

    max_abs_diff: float
    fp32_count: int
    int8_count: int

    @property
    def count_change(self) -> float:
        """Relative change of the total count (0 when fp32 finds nothing)."""
        return (self.int8_count - self.fp32_count) / self.fp32_count if self.fp32_count else 0.0


def _check_int8(
    fp32_path: Path, int8_path: Path, tiles: list[npt.NDArray[np.float32]], max_count_change: float
) -> Int8Check:
    """Run both models on every tile; raise ExportError when the int8 count moves more than allowed."""
    from lesioncount.count import decode_lesions
    from lesioncount.types import ModelSpec

    a = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
    spec = ModelSpec.from_metadata(a.get_modelmeta().custom_metadata_map)
    nc = len(spec.classes)
    diff, n_a, n_b = 0.0, 0, 0
    for x in tiles:
        ya, yb = a.run(None, {"image": x})[0][0], b.run(None, {"image": x})[0][0]
        diff = max(diff, float(np.abs(ya[:nc] - yb[:nc]).max()))
        n_a += len(decode_lesions(ya[:nc], ya[nc:], spec.thresholds, spec.classes, stride=spec.output_stride))
        n_b += len(decode_lesions(yb[:nc], yb[nc:], spec.thresholds, spec.classes, stride=spec.output_stride))
    check = Int8Check(diff, n_a, n_b)
    # Few peaks make the share noisy: judge the change only when fp32 finds enough to count.
    if n_a >= MIN_PEAKS_FOR_CHECK and abs(check.count_change) > max_count_change:
        raise ExportError(
            f"the int8 model counts {check.count_change:+.1%} against fp32 on the calibration tiles "
            f"({n_b} vs {n_a}; limit {max_count_change:.0%}): recalibrate it on more, or more typical, photos"
        )
    return check
