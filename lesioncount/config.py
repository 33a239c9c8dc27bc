"""Typed configuration: frozen dataclasses loaded from YAML; unknown keys fail with a "did you mean"."""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from lesioncount.types import bad_class_map_targets

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override is wrong; the message says which key and how to fix it."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; saved beside its checkpoints.

    Attributes:
        name: model name written into the exported ONNX.
        arch: a key of ``lesioncount.train.model.MODELS``.
        data_dir: folder with Pascal VOC ``.xml`` + ``.jpg`` pairs (ACNE04 ``train``), or "" for synthetic only.
        out_dir: where checkpoints, logs and the resolved config go.
        val_fraction: share of source faces held out (split by source face, never by file).
        max_images: use at most this many training photos (0: all); for quick runs.
        crop_px: training crop side.
        batch_size: crops per step.
        steps: optimiser steps in the whole run.
        lr: peak learning rate (one-cycle schedule).
        weight_decay: AdamW weight decay.
        threads: torch intra-op threads.
        seed: seeds the held-out split, and the data unless ``data_seed`` is set.
        data_seed: seeds data order, augmentation and synthetic lesions (-1: ``seed``); a second stage
            that fine-tunes a model sets it to see new crops while keeping the same held-out faces.
        scar_prob: chance a crop gets synthetic scars planted on its skin.
        mark_prob: chance a crop gets flat red/brown marks (hard negatives).
        synth_acne_prob: chance a crop gets synthetic acne lesions planted.
        synthetic_only: train on synthetic skin-like backgrounds only (tests, no data needed).
        checkpoint_every_s: seconds between checkpoints.
        val_every_steps: steps between validation passes.
        bf16: bf16 autocast for the forward pass (faster on AVX-512 CPUs).
        face_height_px: face-box height in training pixels (the working scale recorded in the model).
        init_from: a checkpoint whose weights start the run (fine-tuning); "" starts from scratch.
        ema_decay: decay of the exponential moving average of the weights that validation, calibration and
            ``final.pt`` use (0 turns it off).
        extra_points: a COCO file of point labels (``point`` + ``radius``; its photos beside it) whose photos
            are trained on too, every label as ``inflammatory`` (ACNE04 valid's expert points); "" for none.
        extra_half: train on only this fixed half (1 or 2, ``lesioncount.data.split_half``) of those photos,
            so that the other half can be reported on; 0 takes them all.
        extra_repeat: each of those photos is drawn this many times as often as a ``data_dir`` photo.
    """

    name: str = "lesioncount-unet16"
    arch: str = "unet16"
    data_dir: str = "../shared/data/acne04/train"
    out_dir: str = "runs/unet16"
    val_fraction: float = 0.1
    max_images: int = 0
    crop_px: int = 256
    batch_size: int = 8
    steps: int = 20000
    lr: float = 3e-3
    weight_decay: float = 1e-4
    threads: int = 2
    seed: int = 0
    data_seed: int = -1
    scar_prob: float = 0.5
    mark_prob: float = 0.5
    synth_acne_prob: float = 0.25
    synthetic_only: bool = False
    checkpoint_every_s: float = 120.0
    val_every_steps: int = 1000
    bf16: bool = True
    face_height_px: float = 500.0
    class_map: dict[str, str] = field(default_factory=dict)
    init_from: str = ""
    ema_decay: float = 0.999
    extra_points: str = ""
    extra_half: int = 0
    extra_repeat: int = 1

    def check(self) -> list[str]:
        """What cannot be right in these values (empty when all is well)."""
        rules = [
            (0 < self.val_fraction < 1, f"val_fraction must be between 0 and 1, got {self.val_fraction}"),
            (
                self.crop_px >= 64 and self.crop_px % 16 == 0,
                f"crop_px must be a multiple of 16, >= 64; got {self.crop_px}",
            ),
            (self.batch_size >= 1, f"batch_size must be 1 or more, got {self.batch_size}"),
            (self.steps >= 1, f"steps must be 1 or more, got {self.steps}"),
            (0 < self.lr < 1, f"lr must be between 0 and 1, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be 0 or more, got {self.weight_decay}"),
            (self.threads >= 1, f"threads must be 1 or more, got {self.threads}"),
            (self.max_images >= 0, f"max_images must be 0 (all) or more, got {self.max_images}"),
            (self.face_height_px > 0, f"face_height_px must be positive, got {self.face_height_px}"),
            (0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}"),
            (self.extra_half in (0, 1, 2), f"extra_half must be 0 (all), 1 or 2, got {self.extra_half}"),
            (self.extra_repeat >= 1, f"extra_repeat must be 1 or more, got {self.extra_repeat}"),
            (self.val_every_steps >= 1, f"val_every_steps must be 1 or more, got {self.val_every_steps}"),
            (
                self.checkpoint_every_s >= 0,
                f"checkpoint_every_s must be 0 (every step) or more, got {self.checkpoint_every_s}",
            ),
        ]
        rules += [
            (0 <= getattr(self, k) <= 1, f"{k} must be a probability in [0, 1], got {getattr(self, k)}")
            for k in ("scar_prob", "mark_prob", "synth_acne_prob")
        ]
        bad_map = bad_class_map_targets(self.class_map)
        rules.append((bad_map is None, bad_map or ""))
        return [msg for ok, msg in rules if not ok]


def _check_keys(cls: type, data: dict[str, Any], where: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(sorted(names))}"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build a config dataclass from a dict, refusing unknown keys and wrong types."""
    _check_keys(cls, data, where)
    typed: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            continue
        v = data[f.name]
        default = f.default if f.default is not dataclasses.MISSING else None
        if isinstance(default, bool) and not isinstance(v, bool):
            raise ConfigError(f"{where}: {f.name} must be true or false, got {v!r}")
        if isinstance(default, int | float) and not isinstance(default, bool):
            # true/false are not numbers here (YAML would turn them into 1/0), and an integer key takes
            # only whole numbers (2.5 steps is a mistake, not 2).
            whole = isinstance(v, int) or (isinstance(v, float) and v.is_integer())
            if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(default, int) and not whole):
                kind = "a whole number" if isinstance(default, int) else "a number"
                raise ConfigError(f"{where}: {f.name} must be {kind}, got {v!r}")
            v = type(default)(v)
        if isinstance(default, str) and not isinstance(v, str):
            raise ConfigError(f"{where}: {f.name} must be text, got {v!r}")
        typed[f.name] = v
    cfg = cls(**typed)
    check = getattr(cfg, "check", None)
    if check is not None:
        problems = check()
        if problems:
            raise ConfigError(f"{where}: " + "; ".join(problems))
    return cfg


def load_yaml(cls: type[T], path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> T:
    """Load a YAML file into ``cls``; ``overrides`` (from CLI flags) win over the file."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{p}: cannot read YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of keys to values")
    data.update(overrides or {})
    return from_dict(cls, data, where=str(p))


def save_yaml(cfg: object, path: str | os.PathLike[str]) -> None:
    """Write the resolved config beside an output."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))  # type: ignore[call-overload]
