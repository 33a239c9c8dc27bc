"""A hand-built ONNX model with a known answer, to test tiling, scaling and coordinates without training.

It follows the shipped models' contract (metadata, 3 heatmaps + 2 log-size channels at stride 2): the
``inflammatory`` heatmap is sigmoid(gain * (R - G) - bias) averaged over 3x3, so a red blob on grey skin
gives one peak at its centre. Its receptive field is a few pixels, so tiled and whole-image runs agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lesioncount.types import CLASSES, ModelSpec


def make_toy_model(path: Path, *, face_height_px: float = 500.0, gain: float = 12.0, bias: float = 2.5) -> Path:
    w = np.zeros((5, 3, 3, 3), np.float32)
    k = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 16
    w[0, 0] = gain * k  # +R
    w[0, 1] = -gain * k  # -G
    b = np.array([-bias, -20.0, -20.0, np.log(8.0), np.log(8.0)], np.float32)
    conv = helper.make_node("Conv", ["image", "W", "B"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1])
    sl_h = helper.make_node("Slice", ["c", "s0", "s3", "ax"], ["h"])
    sl_s = helper.make_node("Slice", ["c", "s3", "s5", "ax"], ["s"])
    sig = helper.make_node("Sigmoid", ["h"], ["hs"])
    cat = helper.make_node("Concat", ["hs", "s"], ["maps"], axis=1)
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(b, "B"),
        numpy_helper.from_array(np.array([0], np.int64), "s0"),
        numpy_helper.from_array(np.array([3], np.int64), "s3"),
        numpy_helper.from_array(np.array([5], np.int64), "s5"),
        numpy_helper.from_array(np.array([1], np.int64), "ax"),
    ]
    graph = helper.make_graph(
        [conv, sl_h, sl_s, sig, cat],
        "toy",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 3, None, None])],
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, [None, 5, None, None])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    spec = ModelSpec(
        name="toy",
        version="test",
        classes=CLASSES,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        output_stride=2,
        face_height_px=face_height_px,
        thresholds=dict.fromkeys(CLASSES, 0.5),
        tile_px=128,
        tile_overlap_px=32,
        training_data="none: a hand-built test model",
    )
    for key, value in spec.to_metadata().items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def red_blob(image: np.ndarray, x: float, y: float, radius: float) -> np.ndarray:
    """A copy with a red Gaussian spot (the toy model's 'lesion') centred at (x, y)."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    g = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * radius**2))[..., None]
    red = np.array([235, 60, 60], np.float32)
    return np.clip(image * (1 - g) + red * g, 0, 255).astype(np.uint8)
