"""Two networks as one model: the first on the image, the second on its mirror, their maps averaged.

Test-time flip averaging runs one network twice (on the image and on its mirror). ``ensemble_onnx`` runs
a second, independently trained network on the mirror instead, inside one ONNX graph, so an ensemble of
two networks costs what flip averaging costs. The first model's other outputs (its experts' heatmap)
come from the first network on the image alone. Only ``onnx`` is needed, no torch.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import onnx
from onnx import helper

from lesioncount.io import atomic_path
from lesioncount.train.contract import contract_of, write_contract
from lesioncount.types import ModelSpec

MAPS = "maps"
#: Every name of the second network (run on the mirror) starts so.
SECOND_PREFIX = "mirror/"
_INT64_MIN = -(2**63)


def _mirror(src: str, dst: str, name: str) -> list[onnx.NodeProto]:
    """Nodes reversing the last axis (width) of ``src`` into ``dst``."""
    consts = {
        "starts": [-1],
        "ends": [_INT64_MIN],
        "axes": [3],
        "steps": [-1],
    }
    nodes = [
        helper.make_node(
            "Constant",
            [],
            [f"{name}/{k}"],
            value=helper.make_tensor(f"{name}/{k}", onnx.TensorProto.INT64, [1], v),
        )
        for k, v in consts.items()
    ]
    nodes.append(helper.make_node("Slice", [src, *(f"{name}/{k}" for k in consts)], [dst], name=name))
    return nodes


def ensemble_onnx(
    first: str | os.PathLike[str],
    second: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    version: str | None = None,
) -> ModelSpec:
    """Write ``out``: ``maps = (first(x) + mirror(second(mirror(x)))) / 2``, with the first model's other
    outputs and contract (``flip_average`` off: the graph does it; ``version`` if given).

    Both models must share the input, the classes, the output stride, the input multiple, the mean and
    the std. Thresholds are the first model's: calibrate the ensemble after (``lesioncount calibrate``).

    Raises:
        ValueError: the two models do not share that contract, or the second has no ``maps`` output.
    """
    a, b = onnx.load(str(first)), onnx.load(str(second))
    spec_a, spec_b = contract_of(a), contract_of(b)
    for field in ("classes", "output_stride", "input_multiple", "mean", "std"):
        if getattr(spec_a, field) != getattr(spec_b, field):
            raise ValueError(f"the two models differ in {field}: {getattr(spec_a, field)} vs {getattr(spec_b, field)}")
    (x_a,), (x_b,) = a.graph.input, b.graph.input
    if MAPS not in {o.name for o in b.graph.output}:
        raise ValueError(f"{second}: no '{MAPS}' output")
    # The second network's maps alone (an experts' branch of its own would run for nothing), every name
    # prefixed so that it cannot meet the first's.
    b = onnx.utils.Extractor(b).extract_model([x_b.name], [MAPS])
    b = onnx.compose.add_prefix(b, SECOND_PREFIX)
    first_maps = "first/maps"
    nodes = []
    for n in a.graph.node:
        copy_node = onnx.NodeProto()
        copy_node.CopyFrom(n)
        for k, name in enumerate(copy_node.output):
            if name == MAPS:
                copy_node.output[k] = first_maps
        for k, name in enumerate(copy_node.input):
            if name == MAPS:
                copy_node.input[k] = first_maps
        nodes.append(copy_node)
    back = f"{SECOND_PREFIX}maps_back"
    nodes += _mirror(x_a.name, f"{SECOND_PREFIX}{x_b.name}", f"{SECOND_PREFIX}flip_in")
    nodes += list(b.graph.node)
    nodes += _mirror(f"{SECOND_PREFIX}{MAPS}", back, f"{SECOND_PREFIX}flip_out")
    nodes.append(helper.make_node("Add", [first_maps, back], ["ensemble/sum"], name="ensemble/sum"))
    half = helper.make_tensor("ensemble/half", onnx.TensorProto.FLOAT, [], [0.5])
    nodes.append(helper.make_node("Constant", [], ["ensemble/half"], value=half))
    nodes.append(helper.make_node("Mul", ["ensemble/sum", "ensemble/half"], [MAPS], name="ensemble/mean"))
    graph = helper.make_graph(
        nodes,
        "lesioncount_ensemble",
        [x_a],
        list(a.graph.output),
        list(a.graph.initializer) + list(b.graph.initializer),
        value_info=[v for v in a.graph.value_info if v.name != MAPS] + list(b.graph.value_info),
    )
    opsets: dict[str, int] = {}
    for imp in list(a.opset_import) + list(b.opset_import):
        opsets[imp.domain] = max(opsets.get(imp.domain, 0), imp.version)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = max(a.ir_version, b.ir_version)
    spec = dataclasses.replace(spec_a, flip_average=False, version=version or spec_a.version)
    spec.check()
    write_contract(model, spec)
    model.doc_string = (
        f"{spec.name} {spec.version}: two networks, the first on the image and the second on its mirror, "
        f"their maps averaged ({Path(first).name} + {Path(second).name})"
    )
    onnx.checker.check_model(model)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return spec
