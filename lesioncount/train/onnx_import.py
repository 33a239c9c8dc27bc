"""Shipped ONNX weights back into a trainable ``LesionUNet``.

The export folds each BatchNorm into the convolution before it, so an ONNX model holds one weight and
one bias per convolution. Loading them back gives each BatchNorm the identity statistics (mean 0,
variance ``1 - eps``, scale 1) and the folded bias as its shift: in eval mode the network computes
exactly what the ONNX model does. Train such a network with its BatchNorms in eval mode (their
statistics are the folded ones, not batch statistics). A model with an experts' heatmap
(``lesioncount.train.expert``) loads its network alone; an ensemble (``lesioncount.train.ensemble``) its
first network, the one run on the image.
"""

from __future__ import annotations

import os

import onnx
import torch
from onnx import numpy_helper
from torch import nn

from lesioncount.train.ensemble import SECOND_PREFIX
from lesioncount.train.model import LesionUNet, create_model


def _conv_nodes(graph: onnx.GraphProto) -> dict[str, tuple[onnx.TensorProto, onnx.TensorProto | None]]:
    """Module path (``enc0.0.0``) -> (weight, bias) of each Conv node, named as the torch exporter names
    its outputs (``/enc0/enc0.0/enc0.0.0/Conv_output_0``)."""
    init = {t.name: t for t in graph.initializer}
    out = {}
    for node in graph.node:
        if node.op_type != "Conv" or node.output[0].startswith(SECOND_PREFIX):
            continue  # an ensemble's second network is not the one loaded
        parts = node.output[0].strip("/").split("/")
        if len(parts) < 2 or not parts[-1].startswith("Conv"):
            raise ValueError(f"unexpected Conv node name {node.output[0]!r}: not a lesioncount export")
        weight = init[node.input[1]]
        bias = init[node.input[2]] if len(node.input) > 2 else None
        out[parts[-2]] = (weight, bias)
    return out


def load_onnx_weights(model: LesionUNet, onnx_path: str | os.PathLike[str]) -> LesionUNet:
    """Copy an exported model's weights into ``model`` (same architecture); returns it, in eval mode.

    Raises:
        ValueError: the ONNX model's convolutions do not match the network's, name for name and shape for shape.
    """
    # A model with an experts' heatmap also holds its branch's convolutions (``branch.*``): not the network's.
    convs = {k: v for k, v in _conv_nodes(onnx.load(str(onnx_path)).graph).items() if not k.startswith("branch.")}
    modules = dict(model.named_modules())
    torch_convs = {name for name, m in modules.items() if isinstance(m, nn.Conv2d)}
    if set(convs) != torch_convs:
        raise ValueError(
            f"{onnx_path}: its convolutions do not match the network's "
            f"(missing {sorted(torch_convs - set(convs))[:3]}, extra {sorted(set(convs) - torch_convs)[:3]})"
        )
    with torch.no_grad():
        for name, (w, b) in convs.items():
            conv = modules[name]
            assert isinstance(conv, nn.Conv2d)
            weight = torch.from_numpy(numpy_helper.to_array(w).copy())
            if weight.shape != conv.weight.shape:
                raise ValueError(
                    f"{onnx_path}: {name} has shape {tuple(weight.shape)}, the network {tuple(conv.weight.shape)}"
                )
            conv.weight.copy_(weight)
            bias = torch.zeros(weight.shape[0]) if b is None else torch.from_numpy(numpy_helper.to_array(b).copy())
            if conv.bias is not None:
                conv.bias.copy_(bias)
                continue
            # The BatchNorm that followed this conv in training (``x.0`` conv, ``x.1`` norm) was folded in.
            bn = modules.get(name.rsplit(".", 1)[0] + "." + str(int(name.rsplit(".", 1)[1]) + 1))
            if not isinstance(bn, nn.BatchNorm2d):
                raise ValueError(f"{name}: a conv without bias must be followed by a BatchNorm")
            assert bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            bn.weight.fill_(1.0)
            bn.bias.copy_(bias)
    return model.eval()


def network_from_onnx(onnx_path: str | os.PathLike[str], arch: str = "unet24", n_classes: int = 3) -> LesionUNet:
    """A ``create_model(arch)`` network holding the exported model's weights (eval mode)."""
    return load_onnx_weights(create_model(arch, n_classes), onnx_path)
