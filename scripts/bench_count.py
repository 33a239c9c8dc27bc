"""Benchmark the counting core on a 4000x3000 frontal photo (``make bench``).

Prints: end-to-end latency (decode to JSON) for ORT fp32 and int8, per-stage times, the network alone on
the same tiles in torch eager vs ORT fp32 vs ORT int8, the model's GFLOP and achieved GFLOP/s against this
machine's measured matrix-multiply peak, and (when ../shared/data is present) how much int8 changes total
counts on the ACNE04 validation photos. Nothing here is a test: numbers vary 5-10% between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from lesioncount.demo import demo_photo
from lesioncount.infer import DEFAULT_MODEL_STEM, models_dir
from lesioncount.io import write_image, write_json
from lesioncount.pipeline import LesionCounter

ROOT = Path(__file__).resolve().parent.parent


def clinic_photo(path: Path) -> None:
    """A 4000x3000 JPEG: the demo portrait (planted lesions) enlarged; the face box is about a quarter of its height."""
    image, _ = demo_photo(0, upscale=6)  # 3072x3072
    h, w = image.shape[:2]
    canvas = cv2.resize(image[h // 8 : h // 8 + 2304, :], (4000, 3000), interpolation=cv2.INTER_CUBIC)
    write_image(path, canvas, quality=92)


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def end_to_end(counter: LesionCounter, photo: Path, out: Path, runs: int) -> tuple[float, dict[str, float], int]:
    times, stages = [], []
    n = 0
    for _ in range(runs):
        t = time.perf_counter()
        r = counter.count(photo)
        write_json(out, r.to_dict())
        times.append(time.perf_counter() - t)
        stages.append(r.timing_s)
        n = r.counts["total_acne"]
    med = {k: statistics.median(s[k] for s in stages) for k in stages[0]}
    return statistics.median(times), med, n


def network_only(model_path: Path, tiles: list[np.ndarray], threads: int) -> float:
    from lesioncount.infer import Predictor

    p = Predictor(model_path, threads=threads)
    for t in tiles[:1]:
        p.run(t)
    return min(_timed(lambda: [p.run(t) for t in tiles]) for _ in range(3))


def torch_eager(tiles: list[np.ndarray], threads: int, arch: str) -> tuple[float, float] | None:
    """Seconds for the same tiles in torch eager (fp32) and the model's GFLOP per megapixel; None without torch."""
    try:
        import torch

        from lesioncount.train.export import load_checkpoint  # noqa: F401 - proves the train extra is present
        from lesioncount.train.model import create_model
    except ImportError:
        return None
    torch.set_num_threads(threads)
    model = create_model(arch).eval()
    flops = []

    def hook(mod, inp, out):  # type: ignore[no-untyped-def]
        k = mod.kernel_size[0] * mod.kernel_size[1]
        flops.append(2 * mod.in_channels // mod.groups * mod.out_channels * k * out.shape[2] * out.shape[3])

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    x0 = torch.zeros(1, 3, 512, 512)
    with torch.no_grad():
        model(x0)
    for h in hooks:
        h.remove()
    gflop_per_mpix = sum(flops) / 1e9 / (512 * 512 / 1e6)
    xs = [torch.from_numpy(np.ascontiguousarray(t.transpose(2, 0, 1)[None].astype(np.float32) / 255)) for t in tiles]
    with torch.no_grad():
        model(xs[0])
        best = min(_timed(lambda: [model(x) for x in xs]) for _ in range(3))
    return best, gflop_per_mpix


def int8_agreement(
    fp32: LesionCounter, int8: LesionCounter, folder: Path, limit: int
) -> tuple[int, float, float] | None:
    photos = sorted(folder.glob("*.jpg"))[:limit]
    if not photos:
        return None
    a = [fp32.count(p).counts["total_acne"] for p in photos]
    b = [int8.count(p).counts["total_acne"] for p in photos]
    total_change = abs(sum(b) - sum(a)) / max(1, sum(a))
    mean_abs = float(np.mean(np.abs(np.array(a) - np.array(b))))
    return len(photos), total_change, mean_abs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--valid", default=str(ROOT.parent / "shared" / "data" / "acne04" / "valid"))
    ap.add_argument("--valid-limit", type=int, default=283)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    con = Console()
    tmp = Path(tempfile.mkdtemp(prefix="lesioncount-bench-"))
    photo = tmp / "clinic_4000x3000.jpg"
    clinic_photo(photo)
    fp32 = LesionCounter(threads=args.threads)
    int8 = LesionCounter(int8=True, threads=args.threads)
    figs: dict[str, object] = {
        "threads": args.threads,
        "photo": "4000x3000 JPEG, face box about a quarter of the frame height",
    }

    e2e = Table(title=f"end to end, 4000x3000 photo, median of {args.runs} runs, {args.threads} threads")
    e2e.add_column("model")
    stage_names = ["decode", "face", "preprocess", "inference", "postprocess"]
    for s in [*stage_names, "total (decode to JSON written)"]:
        e2e.add_column(s, justify="right")
    for name, c in (("ORT fp32", fp32), ("ORT int8", int8)):
        total, stages, n = end_to_end(c, photo, tmp / f"{name}.json", args.runs)
        e2e.add_row(name, *(f"{stages[s] * 1000:.0f} ms" for s in stage_names), f"{total * 1000:.0f} ms")
        figs[f"e2e_{name}_s"] = total
        figs[f"stages_{name}_s"] = stages
        figs[f"total_acne_{name}"] = n
    con.print(e2e)

    # The same working-scale tiles the pipeline feeds the network.
    from lesioncount.face import analyse_face
    from lesioncount.io import load_image
    from lesioncount.pipeline import DECODE_MIN_SHORT_SIDE_PX, working_crop
    from lesioncount.preprocess import pad_to_multiple, plan_tiles, working_scale

    loaded = load_image(photo, min_short_side_px=DECODE_MIN_SHORT_SIDE_PX)
    face = analyse_face(loaded.image)
    scale = working_scale(face.height_px, loaded.image.shape[:2], fp32.spec.face_height_px)
    work = pad_to_multiple(working_crop(loaded.image, face, scale, loaded.decode_scale)[0])
    tiles = [
        np.ascontiguousarray(work[t.y0 : t.y1, t.x0 : t.x1])
        for t in plan_tiles(work.shape[0], work.shape[1], fp32.spec.tile_px, fp32.spec.tile_overlap_px)
    ]
    mpix = sum(t.shape[0] * t.shape[1] for t in tiles) / 1e6
    net = Table(title=f"network only: {len(tiles)} tile(s), {mpix:.2f} Mpix at working scale, {args.threads} threads")
    for col in ("runtime", "seconds", "speed-up vs torch", "GFLOP/s", "% of matmul peak"):
        net.add_column(col, justify="right")
    peak = matmul_peak_gflops()
    # The shipped model is named lesioncount-<arch>: the same architecture in torch eager.
    te = torch_eager(tiles, args.threads, DEFAULT_MODEL_STEM.removeprefix("lesioncount-"))
    t32 = network_only(models_dir() / f"{DEFAULT_MODEL_STEM}.onnx", tiles, args.threads)
    t8 = network_only(models_dir() / f"{DEFAULT_MODEL_STEM}.int8.onnx", tiles, args.threads)
    gpm = te[1] if te else None
    rows = [("torch eager fp32", te[0] if te else None), ("ORT fp32", t32), ("ORT int8 (static QDQ)", t8)]
    for name, sec in rows:
        if sec is None:
            net.add_row(name, "n/a (no torch)", "", "", "")
            continue
        gflops = gpm * mpix / sec if gpm else float("nan")
        net.add_row(
            name, f"{sec:.3f}", f"{te[0] / sec:.1f}x" if te else "", f"{gflops:.1f}", f"{100 * gflops / peak:.0f}%"
        )
        figs[f"net_{name}_s"] = sec
    con.print(net)
    con.print(
        f"model: {gpm:.1f} GFLOP per megapixel; machine fp32 matmul peak (numpy, {peak:.0f} GFLOP/s)"
        if gpm
        else f"machine fp32 matmul peak {peak:.0f} GFLOP/s"
    )
    figs.update({"gflop_per_mpix": gpm, "matmul_peak_gflops": peak, "tiles": len(tiles), "work_mpix": mpix})

    valid = Path(args.valid)
    if valid.is_dir():
        agr = int8_agreement(fp32, int8, valid, args.valid_limit)
        if agr:
            n, change, mae = agr
            con.print(
                f"int8 vs fp32 on {n} ACNE04 validation photos: total count changes by {100 * change:.2f}%, "
                f"mean absolute per-photo difference {mae:.2f} lesions"
            )
            figs.update({"int8_total_change": change, "int8_mean_abs_diff": mae, "int8_n_photos": n})
    else:
        con.print("(../shared/data absent: int8 count agreement on validation photos skipped)")
    if args.json:
        Path(args.json).write_text(json.dumps(figs, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
