"""The training loop: seeded, resumable, logged; ends with threshold calibration on held-out faces.

``train(cfg)`` writes to ``cfg.out_dir``: ``config.yaml`` (resolved), ``log.jsonl`` (one JSON line per log
step and per validation), ``last.pt`` (rolling checkpoint, atomic) and ``final.pt`` (with calibrated
thresholds). Rerunning with the same ``out_dir`` resumes from ``last.pt``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lesioncount import synth
from lesioncount.config import TrainConfig, save_yaml
from lesioncount.count import decode_lesions
from lesioncount.data import hayashi_grade_from_name
from lesioncount.io import atomic_path
from lesioncount.matching import match_centres
from lesioncount.preprocess import pad_to_multiple
from lesioncount.train.calibrate import choose_acne_threshold
from lesioncount.train.checkpoint import load_checkpoint_file
from lesioncount.train.dataset import (
    Item,
    LesionDataset,
    TrainingDataError,
    load_items,
    load_point_items,
    normalise,
    split_by_source,
)
from lesioncount.train.model import LesionUNet, count_parameters, create_model
from lesioncount.types import CLASSES

log = logging.getLogger(__name__)


def one_cycle_steps(steps: int) -> int:
    """The schedule's length for a step budget: one step is scheduled as two (the first is all it runs)."""
    return max(int(steps), 2)


def one_cycle(
    opt: torch.optim.Optimizer, max_lr: float, steps: int, *, last_epoch: int = -1
) -> torch.optim.lr_scheduler.OneCycleLR:
    """The one-cycle learning-rate schedule of a training run: a 10% warm-up, then cosine annealing.

    On short runs (smoke tests) the warm-up lasts at least 1.5 steps: torch divides by its length, and a
    run of 10 steps or fewer made it zero.
    """
    total = one_cycle_steps(steps)
    pct = min(0.75, max(0.1, 2.5 / total))
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=max_lr, total_steps=total, pct_start=pct, last_epoch=last_epoch
    )


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet penalty-reduced focal loss on heatmap logits (alpha 2, beta 4), normalised by peaks."""
    logits = logits.float()
    pos = target.eq(1).float()
    log_p = F.logsigmoid(logits)
    log_1p = F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    pos_loss = -((1 - p) ** 2) * log_p * pos
    neg_loss = -((1 - target) ** 4) * p**2 * log_1p * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def size_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L1 on log box size at lesion centres only."""
    w = weight.unsqueeze(1)
    return (F.l1_loss(pred.float() * w, target * w, reduction="sum")) / w.sum().clamp(min=1)


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


@torch.no_grad()
def predict_maps(model: LesionUNet, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fp32 heatmaps and log sizes for a whole (small) image, padded to the model's input multiple."""
    h, w = image.shape[:2]
    padded = pad_to_multiple(image, model.input_multiple)
    x = torch.from_numpy(normalise(padded))[None]
    out = model(x)[0].numpy()
    s = model.output_stride
    n = model.n_classes
    return out[:n, : h // s, : w // s], out[n:, : h // s, : w // s]


def _val_set(items: list[Item], cfg: TrainConfig, limit: int) -> list[tuple[np.ndarray, list[Any], int | None]]:
    """Held-out photos with scars planted (fixed seed), their lesions, and their Hayashi grade."""
    out = []
    rng = np.random.default_rng(cfg.seed + 999)
    for item in items[:limit]:
        bgr = cv2.imread(item.path, cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        avoid = [(x, y, max(w, h) / 2 + 4) for x, y, w, h, _ in item.lesions]
        image, planted = synth.plant(
            image,
            {"boxcar": 1, "icepick": 1, "rolling": 1, "hypertrophic": 1, "red_mark": 2, "brown_mark": 1},
            rng,
            allowed=synth.skin_tone_mask(image),
            avoid=avoid,
        )
        lesions = list(item.lesions) + [
            (p.x, p.y, p.bbox[2], p.bbox[3], CLASSES.index(p.cls)) for p in planted if p.cls
        ]
        out.append((image, lesions, hayashi_grade_from_name(item.path)))
    return out


def _synthetic_val(cfg: TrainConfig, n: int) -> list[tuple[np.ndarray, list[Any], int | None]]:
    ds = LesionDataset([], cfg.crop_px, 2, n, cfg.seed + 12345, synthetic_only=True)
    return [(*ds.sample(i), None) for i in range(n)]


def evaluate_maps(
    model: LesionUNet, val: list[tuple[np.ndarray, list[Any], int | None]]
) -> list[tuple[np.ndarray, np.ndarray, list[Any], int | None]]:
    model.eval()
    maps = [(*predict_maps(model, img), les, g) for img, les, g in val]
    model.train()
    return maps


def calibrate(
    maps: list[tuple[np.ndarray, np.ndarray, list[Any], int | None]], stride: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Choose per-class thresholds on held-out photos.

    Acne classes share one threshold (``train.calibrate.choose_acne_threshold``, the rule the pipeline
    calibration uses too). The scar threshold maximises F1 of planted synthetic scars (centre within
    max(radius, 4 px)).

    Returns:
        thresholds per class, and the validation figures at those thresholds.
    """
    grid = [round(t, 3) for t in np.arange(0.05, 0.71, 0.025)]
    scar_idx = CLASSES.index("scar")
    acne = [i for i, c in enumerate(CLASSES) if c != "scar"]
    best: tuple[float, float, float] = (-1.0, -1.0, 0.3)
    graded = [(hm, ls, les, g) for hm, ls, les, g in maps if g is not None]
    if graded:

        def counts_at(t: float) -> list[int]:
            th = {CLASSES[i]: t for i in acne}
            return [len(decode_lesions(hm, ls, th, stride=stride)) for hm, ls, _, _ in graded]

        best = choose_acne_threshold(
            counts_at,
            [sum(1 for *_, k in les if k in acne) for _, _, les, _ in graded],
            [g for *_, g in graded if g is not None],
            grid,
        )[:3]
    scar_best = (-1.0, 0.3)
    for t in grid:
        tp = fp = fn = 0
        for hm, ls, les, _ in maps:
            found = [p for p in decode_lesions(hm, ls, {"scar": t}, stride=stride)]
            ref = np.array([(x, y, max(4.0, math.sqrt(w * h) / 2)) for x, y, w, h, k in les if k == scar_idx])
            ref = ref.reshape(-1, 3)
            pred = np.array([(px, py) for _, px, py, *_ in found]).reshape(-1, 2)
            matched = len(match_centres(pred, ref[:, :2], ref[:, 2])[0])
            tp, fp, fn = tp + matched, fp + len(pred) - matched, fn + len(ref) - matched
        f1 = 2 * tp / max(1, 2 * tp + fp + fn)
        if f1 > scar_best[0]:
            scar_best = (f1, t)
    thresholds = {c: (best[2] if c != "scar" else scar_best[1]) for c in CLASSES}
    return thresholds, {"hayashi_acc": best[0], "count_r": best[1], "scar_f1": scar_best[0]}


def train(cfg: TrainConfig, progress: Callable[[int, int, dict[str, float]], None] | None = None) -> Path:
    """Train (or resume) a model; returns the path of ``final.pt``.

    Args:
        cfg: the run's configuration.
        progress: called as ``progress(step, total_steps, metrics)`` after each logged step.
    """
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed if cfg.data_seed < 0 else cfg.data_seed)
    if cfg.synthetic_only:
        train_items: list[Item] = []
        val = _synthetic_val(cfg, 16)
    else:
        items = load_items(cfg.data_dir, cfg.class_map)
        if cfg.max_images:
            items = items[: cfg.max_images]
        train_items, val_items = split_by_source(items, cfg.val_fraction, cfg.seed)
        if not train_items or not val_items:
            raise TrainingDataError(f"{cfg.data_dir}: need photos on both sides of the split (found {len(items)})")
        val = _val_set(val_items, cfg, limit=300)
        log.info("%d training photos, %d held-out photos", len(train_items), len(val))
        if cfg.extra_points:
            extra = load_point_items(cfg.extra_points, cfg.extra_half)
            if not extra:
                raise ValueError(f"{cfg.extra_points}: no photos in half {cfg.extra_half}")
            train_items = train_items + extra * cfg.extra_repeat
            log.info("%d point-labelled photos from %s, each drawn %dx", len(extra), cfg.extra_points, cfg.extra_repeat)
    model = create_model(cfg.arch, len(CLASSES))
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = one_cycle(opt, cfg.lr, cfg.steps)
    step = 0
    ckpt_path = out / "last.pt"
    if cfg.init_from and not ckpt_path.exists():
        model.load_state_dict(load_checkpoint_file(cfg.init_from)["model"])
        log.info("weights initialised from %s", cfg.init_from)
    state: dict[str, Any] = {}
    if ckpt_path.exists():
        state = load_checkpoint_file(ckpt_path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step = int(state["step"])
        if sched.total_steps != one_cycle_steps(cfg.steps):
            # A new step budget on resume: continue the one-cycle schedule, stretched or shrunk to fit.
            sched = one_cycle(opt, cfg.lr, cfg.steps, last_epoch=step - 1)
        log.info("resumed from %s at step %d of %d", ckpt_path, step, cfg.steps)
    # EMA of the weights (and BatchNorm buffers): validation, calibration and final.pt use it.
    ema = (
        torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True
        )
        if cfg.ema_decay > 0
        else None
    )
    if ema is not None and ckpt_path.exists() and "ema" in state:
        ema.load_state_dict(state["ema"])
    stride = model.output_stride
    ds = LesionDataset(
        train_items,
        cfg.crop_px,
        stride,
        length=10**9,
        seed=cfg.seed if cfg.data_seed < 0 else cfg.data_seed,
        scar_prob=cfg.scar_prob,
        mark_prob=cfg.mark_prob,
        synth_acne_prob=cfg.synth_acne_prob,
        synthetic_only=cfg.synthetic_only,
    )
    # The resume point decides the data: sample indices continue from the step reached.
    ds.epoch = step
    # One loader process: augmentation overlaps with the optimiser step even with one torch thread.
    loader = DataLoader(ds, batch_size=cfg.batch_size, num_workers=0 if cfg.synthetic_only else 1)
    log.info("model %s: %d parameters", cfg.arch, count_parameters(model))
    logf = open(out / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed in finally
    last_ckpt = time.monotonic()
    t0, seen, run_loss, run_steps = time.monotonic(), 0, 0.0, 0

    def scored() -> LesionUNet:
        """The weights that are validated and shipped: the EMA when there is one."""
        return ema.module if ema is not None else model  # type: ignore[return-value]

    def checkpoint() -> None:
        _save_atomic(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "step": step,
                "config": cfg.__dict__,
                **({"ema": ema.state_dict()} if ema is not None else {}),
            },
            ckpt_path,
        )

    try:
        model.train()
        it = iter(loader)
        while step < cfg.steps:
            x, heat, log_size, weight = next(it)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                hm_logits, size_pred = model.forward_logits(x)
            loss = focal_loss(hm_logits, heat) + 0.1 * size_loss(size_pred, log_size, weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            seen += x.shape[0]
            run_loss += float(loss.detach())
            run_steps += 1
            if time.monotonic() - last_ckpt >= cfg.checkpoint_every_s:
                checkpoint()
                last_ckpt = time.monotonic()
            if step % 50 == 0 or step == cfg.steps:
                rate = seen / max(1e-6, time.monotonic() - t0)
                rec = {
                    "step": step,
                    # The mean since the last record (a resumed run or the last record may cover fewer than 50).
                    "loss": run_loss / max(1, run_steps),
                    "lr": sched.get_last_lr()[0],
                    "crops_per_s": rate,
                    "time": time.time(),
                }
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                run_loss, run_steps = 0.0, 0
                if progress:
                    progress(step, cfg.steps, rec)
            if step % cfg.val_every_steps == 0 and step < cfg.steps:
                th, figs = calibrate(evaluate_maps(scored(), val), stride)
                logf.write(json.dumps({"step": step, "val": figs, "thresholds": th, "time": time.time()}) + "\n")
                logf.flush()
                log.info("step %d validation %s thresholds %s", step, figs, th)
        checkpoint()
        th, figs = calibrate(evaluate_maps(scored(), val), stride)
        logf.write(json.dumps({"step": step, "final_val": figs, "thresholds": th, "time": time.time()}) + "\n")
        final = out / "final.pt"
        _save_atomic(
            {
                "model": scored().state_dict(),
                "step": step,
                "config": cfg.__dict__,
                "thresholds": th,
                "val": figs,
                "arch": cfg.arch,
                "stride": stride,
            },
            final,
        )
        return final
    finally:
        logf.close()
