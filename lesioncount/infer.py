"""ONNX Runtime predictor: reads the model's contract from its metadata and runs it tile by tile (no torch)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from lesioncount.io import sha256_file
from lesioncount.preprocess import pad_to_multiple, plan_tiles
from lesioncount.types import EXPERT_OUTPUT, ModelSpec

log = logging.getLogger(__name__)

#: The shipped model's file stem in ``models/``; ``.int8.onnx`` is its quantised twin.
DEFAULT_MODEL_STEM = "lesioncount-unet24"


class ModelNotFoundError(FileNotFoundError):
    """No model file where one was expected; the message says where we looked."""


def models_dir() -> Path:
    """The shipped models: ``lesioncount/models/`` in an installed wheel, else ``models/`` beside the package
    (a source checkout or an editable install)."""
    here = Path(__file__).resolve().parent
    installed = here / "models"
    return installed if installed.is_dir() else here.parent / "models"


def resolve_model_path(model: str | os.PathLike[str] | None = None, *, int8: bool = False) -> Path:
    """The model to load: an explicit path, ``$LESIONCOUNT_MODEL``, or the shipped model in ``models/``."""
    if model is not None:
        p = Path(model)
        if not p.is_file():
            raise ModelNotFoundError(f"model file {p} does not exist")
        return p
    env = os.environ.get("LESIONCOUNT_MODEL")
    if env:
        return resolve_model_path(env)
    p = models_dir() / (DEFAULT_MODEL_STEM + (".int8.onnx" if int8 else ".onnx"))
    if not p.is_file():
        raise ModelNotFoundError(f"no shipped model at {p}; pass --model PATH or set LESIONCOUNT_MODEL")
    return p


class Predictor:
    """Runs a lesion model on working-scale images.

    Args:
        model_path: the .onnx file (its metadata must hold the ``ModelSpec``).
        threads: ONNX Runtime intra-op threads (None: ORT's default, all cores).
        flip_average: also run the mirror image and average the two outputs (test-time flip averaging; it
            doubles the network's time); None: as the model's contract says.
        heat_sigma: smooth the class heatmaps by a Gaussian of this sigma (output pixels); None: as the
            model's contract says.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        threads: int | None = None,
        *,
        flip_average: bool | None = None,
        heat_sigma: float | None = None,
    ) -> None:
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(model_path)
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own exception types; the message is what matters
            raise ValueError(f"{self.path}: not a loadable ONNX model ({e})") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        self.spec = ModelSpec.from_metadata(meta)
        self.sha256 = sha256_file(self.path)
        self.input_name = self.session.get_inputs()[0].name
        #: the model has the experts' acne heatmap as a second output (see ``ModelSpec.expert_threshold``)
        self.has_experts = EXPERT_OUTPUT in {o.name for o in self.session.get_outputs()}
        self._outputs = ["maps", EXPERT_OUTPUT] if self.has_experts else None
        self._mean = np.array(self.spec.mean, np.float32)
        self._inv_std = 1.0 / np.array(self.spec.std, np.float32)
        self.flip_average = self.spec.flip_average if flip_average is None else flip_average
        self.heat_sigma = self.spec.heat_sigma if heat_sigma is None else float(heat_sigma)

    def _normalise(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        x = (image.astype(np.float32) * (1.0 / 255.0) - self._mean) * self._inv_std
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def run(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Raw output ``(C + 2, H / stride, W / stride)`` for one image whose sides are multiples of the
        model's ``input_multiple``."""
        out = self.session.run(None, {self.input_name: self._normalise(image)})[0]
        return np.asarray(out[0], np.float32)

    def _run_all(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """``run``'s channels, then the experts' heatmap as one more channel when the model has it."""
        if not self.has_experts:
            return self.run(image)
        maps, experts = self.session.run(self._outputs, {self.input_name: self._normalise(image)})
        return np.concatenate([maps[0], experts[0]]).astype(np.float32, copy=False)

    def predict(self, image: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Heatmaps and log sizes for a working-scale image of any size, tiled without seams.

        Args:
            image: HxWx3 uint8 RGB at the model's working scale.

        Returns:
            ``heatmaps`` (C, ceil(H / s), ceil(W / s)) in [0, 1] and ``log_size`` (2, ...), s the output stride.
        """
        heat, log_size, _ = self.predict_all(image)
        return heat, log_size

    def predict_all(
        self, image: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        """``predict``'s maps and the experts' acne heatmap (1, ...), flip-averaged and smoothed as the class
        heatmaps are; None when the model has none."""
        h, w = image.shape[:2]
        s = self.spec.output_stride
        padded = pad_to_multiple(image, self.spec.input_multiple)
        out = self._predict_padded(padded)
        if self.flip_average:
            # Flipped back, the mirror's output column i sits one input pixel (half an output pixel) right of
            # the original's column i (measured on ACNE04 photos: +0.53 output px), so the average also
            # smooths a little across rows. Mirroring about x = W/2 instead aligns the maps (+0.06 px) but
            # was no better on the held-out training faces (Hayashi 0.670 vs 0.684, r 0.803 vs 0.806),
            # and the shipped thresholds were calibrated this way: see docs/model.md.
            out = 0.5 * (out + self._predict_padded(np.ascontiguousarray(padded[:, ::-1]))[:, :, ::-1])
        oh, ow = -(-h // s), -(-w // s)
        nc = len(self.spec.classes)
        heat = out[:nc, :oh, :ow]
        experts = out[nc + 2 :, :oh, :ow] if self.has_experts else None
        if self.heat_sigma > 0:
            # Every class alike: a place that peaks in two classes keeps its stronger one, and smoothing one
            # class only would hand such places to the other.
            heat = np.stack([cv2.GaussianBlur(c, (0, 0), self.heat_sigma) for c in heat])
            if experts is not None:
                experts = cv2.GaussianBlur(experts[0], (0, 0), self.heat_sigma)[None]
        return heat, out[nc : nc + 2, :oh, :ow], experts

    def _predict_padded(self, padded: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        s = self.spec.output_stride
        ph, pw = padded.shape[:2]
        n_out = len(self.spec.classes) + 2 + self.has_experts
        out = np.zeros((n_out, ph // s, pw // s), np.float32)
        for t in plan_tiles(ph, pw, self.spec.tile_px, self.spec.tile_overlap_px, self.spec.input_multiple):
            res = self._run_all(padded[t.y0 : t.y1, t.x0 : t.x1])
            oy, ox = (t.y0 + t.keep_y0) // s, (t.x0 + t.keep_x0) // s
            out[:, oy : (t.y0 + t.keep_y1) // s, ox : (t.x0 + t.keep_x1) // s] = res[
                :, t.keep_y0 // s : t.keep_y1 // s, t.keep_x0 // s : t.keep_x1 // s
            ]
        return out
