"""A model's contract (``ModelSpec``) in its ONNX metadata: read it from, and write it into, a loaded model.

Only ``onnx`` is needed, no torch, so the ONNX-only tools (``train.ensemble``) share it with the export.
"""

from __future__ import annotations

import onnx

from lesioncount.types import ModelSpec


def contract_of(model: onnx.ModelProto) -> ModelSpec:
    """The contract a loaded model carries; raises ValueError naming what is missing or malformed."""
    return ModelSpec.from_metadata({p.key: p.value for p in model.metadata_props})


def write_contract(model: onnx.ModelProto, spec: ModelSpec) -> None:
    """Replace the model's metadata with ``spec``'s (the weights are untouched)."""
    del model.metadata_props[:]
    for key, value in spec.to_metadata().items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
