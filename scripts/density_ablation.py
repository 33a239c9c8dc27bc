"""Ablation (issue 17, not shipped): a density branch beside the frozen 2.2.0 network, counting by its sum.

The heatmap's peaks say where lesions are; counting them compresses (mild photos over-counted, severe ones
under-counted; ``docs/model.md``). Density-map counting (crowd counters, AcneFusionNet) learns a map whose
sum over an area is its number of lesions. Here a copy of the network's last decoder block and a
one-channel head, reading the frozen network's features, learns ACNE04's acne boxes as unit-mass
Gaussians (``lesioncount.train.targets.make_density``) on the training faces, the calibration's held-out
faces left out as the network's own training left them. Its count is the flip-averaged density summed
over the pipeline's counting area, on the pipeline's own working image.

    python scripts/density_ablation.py train --steps 3000 --out runs/density
    python scripts/density_ablation.py cache --photos configs/unet24.yaml --out runs/density/heldout
    python scripts/density_ablation.py cache --photos ../shared/data/acne04/valid --out runs/density/valid
    python scripts/density_ablation.py evaluate runs/density/final.pt runs/density/heldout
    python scripts/density_ablation.py train --joint --start runs/density/final.pt --steps 2500 --out runs/joint
    python scripts/density_ablation.py export runs/joint/final.pt runs/joint/net.onnx  # then calibrate it

Needs the ``train`` extra and ``../shared/data``. The figures are in ``docs/model.md``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from lesioncount.io import atomic_path
from lesioncount.train.checkpoint import load_checkpoint_file, resume_training_state, save_training_state
from lesioncount.train.dataset import Item, LesionDataset, normalise, split_by_source
from lesioncount.train.expert import ACNE_CHANNELS
from lesioncount.train.loop import focal_loss, size_loss
from lesioncount.train.model import LesionUNet, one_channel_branch
from lesioncount.train.onnx_import import network_from_onnx
from lesioncount.train.targets import make_density, make_targets
from lesioncount.types import ACNE_CLASSES, CLASSES

log = logging.getLogger(__name__)

#: The head learns the density times this (unit-mass Gaussians are small numbers per pixel).
DENSITY_SCALE = 100.0


class DensityNet(nn.Module):
    """The frozen lesion network and its density branch: ``forward`` gives ``(maps, density)``, the
    network's output unchanged and the acne density (N, 1, H/s, W/s): lesions per output pixel, >= 0."""

    def __init__(self, trunk: LesionUNet) -> None:
        super().__init__()
        self.trunk = trunk
        self.branch, one = one_channel_branch(trunk)
        nn.init.zeros_(one.weight)
        nn.init.zeros_(one.bias)  # type: ignore[arg-type]
        for p in self.trunk.parameters():
            p.requires_grad_(False)

    def density(self, features: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.branch(features)) / DENSITY_SCALE

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.trunk.last_decoder_input(x)
        return self.trunk.outputs_from(f), self.density(f)


class DensityDataset(LesionDataset):
    """``LesionDataset``'s crops and targets with the acne density map beside them:
    ``(image, heatmap, log_size, size_weight, density)``."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        image, centres = self.augmented(index)
        heat, log_size, weight = make_targets((self.crop_px, self.crop_px), centres, len(CLASSES), self.stride)
        dens = make_density((self.crop_px, self.crop_px), centres, ACNE_CHANNELS, self.stride)
        return tuple(torch.from_numpy(a) for a in (normalise(image), heat, log_size, weight, dens))


def density_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel MSE on the scaled density plus a tenth of the mean absolute count error per crop."""
    scaled = DENSITY_SCALE * target
    count_err = (pred.sum((1, 2, 3)) - scaled.sum((1, 2, 3))).abs() / DENSITY_SCALE
    return nn.functional.mse_loss(pred, scaled) + 0.1 * count_err.mean()


def train_density_branch(
    onnx_path: str | os.PathLike[str],
    items: list[Item],
    out_dir: str | os.PathLike[str],
    *,
    steps: int = 3000,
    joint: bool = False,
    start: str | os.PathLike[str] | None = None,
    batch_size: int = 8,
    crop_px: int = 384,
    lr: float = 1e-3,
    trunk_lr: float = 3e-4,
    ema_decay: float = 0.998,
    seed: int = 0,
    threads: int = 2,
    checkpoint_every_s: float = 120.0,
    arch: str = "unet24",
) -> Path:
    """Train the density branch on ``items`` (resuming from ``out_dir/last.pt``); returns ``final.pt``.

    The network's BatchNorms keep their folded statistics (eval mode throughout). Frozen (the default),
    only the branch learns. ``joint`` fine-tunes the network too (at ``trunk_lr``), on its own heatmap and
    size losses beside the density's, so that the density can shape the features both read; ``start``
    names a branch (a ``final.pt`` of this script) to begin from. Planted scars and marks carry no acne
    mass, so the branch learns to pass over them.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    net = DensityNet(network_from_onnx(onnx_path, arch)).eval()
    if start:
        net.load_state_dict(_net_state(load_checkpoint_file(start), net), strict=True)
    groups = [{"params": list(net.branch.parameters()), "lr": lr}]
    if joint:
        for p in net.trunk.parameters():
            p.requires_grad_(True)
        groups.append({"params": list(net.trunk.parameters()), "lr": trunk_lr})
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=steps, pct_start=0.1)
    ema = torch.optim.swa_utils.AveragedModel(
        net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema_decay), use_buffers=True
    )
    last = out / "last.pt"
    parts = {"net": net, "optimizer": opt, "scheduler": sched, "ema": ema}
    step = resume_training_state(last, **parts)
    if step:
        if sched.total_steps != steps:  # a new step budget: the one-cycle schedule stretched or shrunk to fit
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=[g["lr"] for g in groups], total_steps=steps, pct_start=0.1, last_epoch=step - 1
            )
            parts["scheduler"] = sched
        log.info("resumed from %s at step %d of %d", last, step, steps)
    ds = DensityDataset(items, crop_px, net.trunk.output_stride, length=10**9, seed=seed)
    ds.epoch = step
    loader = DataLoader(ds, batch_size=batch_size, num_workers=1)

    def checkpoint() -> None:
        save_training_state(last, step, **parts)

    logf = open(out / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed in finally
    t0, seen, run_loss, run_steps, last_ckpt = time.monotonic(), 0, 0.0, 0, time.monotonic()
    try:
        it = iter(loader)
        while step < steps:
            x, heat, log_size, weight, target = next(it)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                if joint:
                    f = net.trunk.last_decoder_input(x)
                    hm_logits, size_pred = net.trunk.logits_from(f)
                else:
                    with torch.no_grad():
                        f = net.trunk.last_decoder_input(x)
                pred = net.branch(f.float() if not joint else f)
            loss = density_loss(pred.float(), target)
            if joint:
                loss = loss + focal_loss(hm_logits.float(), heat) + 0.1 * size_loss(size_pred, log_size, weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            ema.update_parameters(net)
            step += 1
            seen += x.shape[0]
            run_loss += float(loss.detach())
            run_steps += 1
            if step % 50 == 0 or step == steps:
                rec = {"step": step, "loss": run_loss / run_steps, "crops_per_s": seen / (time.monotonic() - t0)}
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                run_loss, run_steps = 0.0, 0
            if time.monotonic() - last_ckpt >= checkpoint_every_s:
                checkpoint()
                last_ckpt = time.monotonic()
        checkpoint()
        final = out / "final.pt"
        with atomic_path(final) as tmp:
            torch.save({"net": ema.module.state_dict(), "step": step, "onnx": str(onnx_path), "joint": joint}, tmp)
        return final
    finally:
        logf.close()


def _net_state(state: dict, net: DensityNet) -> dict:
    """The whole ``DensityNet`` state of a ``final.pt``: ``net``, or (a frozen run's first files) the
    branch alone beside the model's own network."""
    if "net" in state:
        return state["net"]
    return {
        **{f"trunk.{k}": v for k, v in net.trunk.state_dict().items()},
        **{f"branch.{k}": v for k, v in state["branch"].items()},
    }


def training_items(config: str | os.PathLike[str]) -> list[Item]:
    """The training faces of a training run's config, its held-out faces left out."""
    from lesioncount.config import TrainConfig, load_yaml
    from lesioncount.train.dataset import load_items

    cfg = load_yaml(TrainConfig, config)
    train, _ = split_by_source(load_items(cfg.data_dir, cfg.class_map), cfg.val_fraction, cfg.seed)
    return train


def despeckle(image: np.ndarray, speckle: np.ndarray) -> np.ndarray:
    """A BGR photo with its salt-and-pepper speckles (``calibrate.speckle_mask``) replaced by each
    channel's 3x3 median."""
    import cv2

    out = image.copy()
    out[speckle] = cv2.medianBlur(image, 3)[speckle]
    return out


def despeckled_items(items: list[Item], out_dir: str | os.PathLike[str]) -> list[Item]:
    """``items`` with each speckled photo (``calibrate.is_speckled``: Roboflow's noisy augmented copies)
    replaced by a despeckled PNG copy written under ``out_dir`` (derived from the data: never committed)."""
    import dataclasses

    import cv2

    from lesioncount.train.calibrate import MAX_SPECKLES, speckle_mask

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kept = []
    for item in items:
        clean = out / (Path(item.path).stem + ".png")
        if not clean.exists():
            bgr = cv2.imread(item.path, cv2.IMREAD_COLOR)
            speckle = speckle_mask(bgr) if bgr is not None else None
            if bgr is None or speckle is None or speckle.sum() <= MAX_SPECKLES:
                kept.append(item)
                continue
            ok, png = cv2.imencode(".png", despeckle(bgr, speckle))
            if not ok:
                raise RuntimeError(f"cannot encode a despeckled copy of {item.path}")
            with atomic_path(clean) as tmp:
                tmp.write_bytes(png.tobytes())
        kept.append(dataclasses.replace(item, path=str(clean)))
    n_clean = sum(k.path.startswith(str(out)) for k in kept)
    log.info("%d of %d training photos despeckled into %s", n_clean, len(kept), out)
    return kept


def cache_photos(photos: str, out_dir: str | os.PathLike[str], model: str) -> None:
    """For each photo (a training config's held-out faces, or a folder of VOC-labelled photos): the
    pipeline's working image, its counting area on the output grid, the box count, the file-name grade
    and the model's own acne count, written to ``out_dir``."""
    import cv2
    from rich.progress import track

    import lesioncount.pipeline as pipeline
    from lesioncount.config import TrainConfig, load_yaml
    from lesioncount.data import hayashi_grade_from_name
    from lesioncount.train.calibrate import _held_out_faces
    from lesioncount.train.dataset import load_items

    if photos.endswith(".yaml"):
        items, grades = _held_out_faces(load_yaml(TrainConfig, photos))
    else:
        items = load_items(photos)
        grades = [int(hayashi_grade_from_name(i.path) or 0) for i in items]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seen: dict[str, tuple] = {}
    crop = pipeline.working_crop

    def keep(*args: object, **kwargs: object) -> tuple:  # the working image and area the pipeline counts on
        seen["crop"] = crop(*args, **kwargs)  # type: ignore[arg-type]
        return seen["crop"]

    pipeline.working_crop = keep  # type: ignore[assignment]
    counter = pipeline.LesionCounter(model)
    s = counter.spec.output_stride
    meta = []
    for k, item in enumerate(track(items, description="caching")):
        seen.clear()
        res = counter.count(item.path)
        rec = {
            "path": item.path,
            "grade": grades[k],
            "boxes": len(item.lesions),
            "i": k,
            "count": sum(1 for les in res.lesions if les.cls in ACNE_CLASSES),
            "work": "crop" in seen,
        }
        if "crop" in seen:
            work, frame, area = seen["crop"]
            oh, ow = -(-work.shape[0] // s), -(-work.shape[1] // s)
            yy, xx = np.mgrid[0:oh, 0:ow]
            centres = np.stack([(xx.ravel() + 0.5) * s, (yy.ravel() + 0.5) * s], 1).astype(float)
            at = frame.work_to_decoded(centres).astype(int)
            ok = (at[:, 1] >= 0) & (at[:, 1] < area.shape[0]) & (at[:, 0] >= 0) & (at[:, 0] < area.shape[1])
            inside = np.zeros(len(at), bool)
            inside[ok] = area[at[ok, 1], at[ok, 0]]
            cv2.imwrite(str(out / f"{k}.png"), cv2.cvtColor(work, cv2.COLOR_RGB2BGR))
            np.save(out / f"{k}_area.npy", inside.reshape(oh, ow))
        meta.append(rec)
    (out / "meta.json").write_text(json.dumps(meta))


def evaluate(checkpoint: str, cache: str, model: str, scales: tuple[float, ...]) -> None:
    """Hayashi accuracy and count r against the boxes of the density count (times each scale) beside the
    model's own count, on cached photos."""
    import cv2

    from lesioncount.count import hayashi_grade
    from lesioncount.preprocess import pad_to_multiple

    net = DensityNet(network_from_onnx(model, "unet24")).eval()
    net.load_state_dict(_net_state(load_checkpoint_file(checkpoint), net))
    meta = json.loads((Path(cache) / "meta.json").read_text())
    dens = []
    for rec in meta:
        if not rec["work"]:
            dens.append(0.0)
            continue
        work = cv2.cvtColor(cv2.imread(str(Path(cache) / f"{rec['i']}.png")), cv2.COLOR_BGR2RGB)
        area = np.load(Path(cache) / f"{rec['i']}_area.npy")
        x = torch.from_numpy(normalise(pad_to_multiple(work, net.trunk.input_multiple)))[None]
        with torch.no_grad():
            d = net.density(net.trunk.last_decoder_input(x))[0, 0].numpy()
            mirror = net.density(net.trunk.last_decoder_input(torch.flip(x, [3])))[0, 0].numpy()[:, ::-1]
        d = 0.5 * (d + mirror)[: area.shape[0], : area.shape[1]]
        dens.append(float(d[area].sum()))
    density = np.array(dens)
    boxes = np.array([r["boxes"] for r in meta], float)
    grades = np.array([r["grade"] for r in meta])
    own = np.array([r["count"] for r in meta], float)

    def accuracy(c: np.ndarray) -> float:
        return float(np.mean([hayashi_grade(round(v)) == g for v, g in zip(c, grades, strict=True)]))

    print(f"{len(meta)} photos; the model's count: Hayashi {accuracy(own):.3f}, r {np.corrcoef(own, boxes)[0, 1]:.3f}")
    for a in scales:
        c = a * density
        print(
            f"density x {a:.2f}: Hayashi {accuracy(c):.3f}, r {np.corrcoef(c, boxes)[0, 1]:.3f}, total {c.sum():.0f} "
            f"(boxes {boxes.sum():.0f})"
        )
    for g in range(4):
        sel = grades == g
        if sel.any():
            per_box = np.maximum(boxes[sel], 1)
            print(
                f"grade {g} ({sel.sum()} photos): median count per box, density "
                f"{np.median(density[sel] / per_box):.2f}, the model's {np.median(own[sel] / per_box):.2f}"
            )


def export_network(checkpoint: str, model: str, out: str) -> float:
    """Write the (fine-tuned) network of a joint run as an ONNX model with ``model``'s contract (its
    experts' heatmap left out; recalibrate the count with ``lesioncount calibrate OUT --soft-count``);
    returns the largest difference between torch and ONNX Runtime on a fixed input."""
    import dataclasses

    import onnx

    from lesioncount.train.contract import contract_of
    from lesioncount.train.export import write_network

    net = DensityNet(network_from_onnx(model, "unet24")).eval()
    net.load_state_dict(_net_state(load_checkpoint_file(checkpoint), net))
    spec = dataclasses.replace(contract_of(onnx.load(model)), expert_threshold=0.0)
    return write_network(net.trunk, Path(out), spec)


def main() -> None:
    import argparse

    logging.basicConfig(level=logging.INFO)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/lesioncount-unet24.onnx", help="the frozen network's model")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the density branch (resumes from OUT/last.pt)")
    t.add_argument("--config", default="configs/unet24.yaml", help="the network's training config")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--out", default="runs/density")
    t.add_argument("--joint", action="store_true", help="fine-tune the network too")
    t.add_argument("--start", help="a branch (final.pt) to begin from")
    t.add_argument(
        "--despeckle",
        metavar="DIR",
        help="train on despeckled copies of the speckled photos (written to DIR once; Roboflow's augmented copies)",
    )
    x = sub.add_parser("export", help="write a joint run's network as an ONNX model")
    x.add_argument("checkpoint")
    x.add_argument("out")
    c = sub.add_parser("cache", help="cache the pipeline's working images and counting areas")
    c.add_argument("--photos", required=True, help="a training config (its held-out faces) or a folder")
    c.add_argument("--out", required=True)
    e = sub.add_parser("evaluate", help="Hayashi and r of the density count on cached photos")
    e.add_argument("checkpoint")
    e.add_argument("cache")
    e.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.1, 1.2, 1.3, 1.4])
    args = p.parse_args()
    if args.cmd == "train":
        items = training_items(args.config)
        if args.despeckle:
            items = despeckled_items(items, args.despeckle)
        train_density_branch(args.model, items, args.out, steps=args.steps, joint=args.joint, start=args.start)
    elif args.cmd == "export":
        print(f"torch vs ONNX Runtime: {export_network(args.checkpoint, args.model, args.out):.2e}")
    elif args.cmd == "cache":
        cache_photos(args.photos, args.out, args.model)
    else:
        evaluate(args.checkpoint, args.cache, args.model, tuple(args.scales))


if __name__ == "__main__":
    main()
