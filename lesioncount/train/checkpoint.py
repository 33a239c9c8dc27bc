"""Reading checkpoints safely: tensors and plain values only, never arbitrary pickled code.

``torch.load(weights_only=True)`` refuses anything but tensors and plain containers; checkpoints written
by earlier versions also hold numpy scalars (a calibrated threshold), which are allowed by name.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np
import torch


#: The only non-torch types a checkpoint may hold: numpy scalars and their dtypes.
def _multiarray() -> Any:
    try:  # numpy 2 (numpy.core is a deprecated alias there)
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy 1.x
        return importlib.import_module("numpy.core.multiarray")


_SAFE_GLOBALS = [_multiarray().scalar, np.dtype, type(np.dtype("float64"))]


def load_checkpoint_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint's dict, loaded with ``weights_only=True`` (tensors, plain values, numpy scalars)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:  # unreadable (permissions, a disk error): said as it is
        raise
    except Exception as e:  # torch raises many types for a file that is no checkpoint (and advises unsafe loading)
        hint = (
            ": this is an ONNX model; give the training checkpoint (.pt) that lesioncount train wrote"
            if str(path).endswith(".onnx")
            else ""
        )
        raise ValueError(f"{path}: not a lesioncount training checkpoint{hint}") from e
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a lesioncount checkpoint (a dict with 'model' weights)")
    return state


def save_training_state(path: str | os.PathLike[str], step: int, **parts: Any) -> None:
    """Write a resumable training state atomically: each part's ``state_dict()`` under its name (a
    module, optimizer, scheduler or averaged model) and ``step``."""
    from lesioncount.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save({name: part.state_dict() for name, part in parts.items()} | {"step": step}, tmp)


def resume_training_state(path: str | os.PathLike[str], **parts: Any) -> int:
    """Load a state written by ``save_training_state`` into the same parts; returns its step, or 0 when
    there is no file yet."""
    if not os.path.exists(path):
        return 0
    state = load_checkpoint_file(path)
    for name, part in parts.items():
        part.load_state_dict(state[name])
    return int(state["step"])
