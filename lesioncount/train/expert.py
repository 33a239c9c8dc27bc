"""A second acne heatmap, trained on dermatologists' point labels beside the frozen box-trained network.

ACNE04's boxes and its experts' points count different things: the experts mark 2.3 times as many
lesions, and one heatmap at one threshold cannot follow both (fine-tuning the whole network on the points
met the expert goals and lost every box and grade figure; ``docs/model.md``). So the shipped network is
frozen, count, grade and marks unchanged, and a copy of its last decoder block and heatmap head, reading
the same features, learns the experts' notion: where a dermatologist would put a mark.

``train_expert_branch`` trains that copy (resumable from ``out_dir/last.pt``) on one fixed half of ACNE04
valid's expert points, keeping a share of that half's faces apart for calibration, so that the other
half can be reported on; ``export_expert_model`` writes an ONNX model with both outputs (``maps`` as
before and ``experts``).
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn
from torch.utils.data import DataLoader

from lesioncount.io import atomic_path
from lesioncount.train.checkpoint import load_checkpoint_file, resume_training_state, save_training_state
from lesioncount.train.dataset import Item, LesionDataset, load_point_items, split_by_source
from lesioncount.train.loop import focal_loss, one_cycle, one_cycle_steps
from lesioncount.train.model import LesionUNet, one_channel_branch
from lesioncount.train.onnx_import import network_from_onnx
from lesioncount.types import ACNE_CLASSES, CLASSES, EXPERT_OUTPUT

log = logging.getLogger(__name__)

ACNE_CHANNELS = [CLASSES.index(c) for c in ACNE_CLASSES]


class ExpertNet(nn.Module):
    """The frozen lesion network and its expert branch: ``forward`` gives ``(maps, experts)``, the
    network's own output unchanged and the experts' acne heatmap (N, 1, H/s, W/s) in [0, 1]."""

    def __init__(self, trunk: LesionUNet) -> None:
        super().__init__()
        self.trunk = trunk
        # Start from the network's own last block and acne head: the branch begins where the boxes' notion
        # is and moves towards the experts'.
        self.branch, one = one_channel_branch(trunk)
        final = trunk.head_hm[-1]
        assert isinstance(final, nn.Conv2d)
        with torch.no_grad():
            one.weight.copy_(final.weight[ACNE_CHANNELS[0] : ACNE_CHANNELS[0] + 1])
            assert one.bias is not None and final.bias is not None
            one.bias.copy_(final.bias[ACNE_CHANNELS[0] : ACNE_CHANNELS[0] + 1])
        for p in self.trunk.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.trunk.last_decoder_input(x)
        return self.trunk.outputs_from(f), torch.sigmoid(self.branch(f))


def expert_items(
    coco: str | os.PathLike[str], half: int, calib_fraction: float, seed: int
) -> tuple[list[Item], list[Item]]:
    """``(train, calibration)``: the photos of one half (0: all) of a point-label file, split by source face."""
    items = load_point_items(coco, half)
    if not items:
        raise ValueError(f"{coco}: no photos in half {half}")
    return split_by_source(items, calib_fraction, seed)


def _refuse_ensemble(onnx_path: str | os.PathLike[str]) -> None:
    """An ensemble's second network would be dropped from the model written with the branch."""
    from lesioncount.train.ensemble import SECOND_PREFIX

    if any(o.startswith(SECOND_PREFIX) for n in onnx.load(str(onnx_path)).graph.node for o in n.output):
        raise ValueError(
            f"{onnx_path} is an ensemble of two networks: train the experts' branch on its first model, "
            "then build the ensemble (`lesioncount ensemble`)"
        )


def train_expert_branch(
    onnx_path: str | os.PathLike[str],
    coco: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    half: int = 1,
    calib_fraction: float = 0.2,
    steps: int = 3000,
    batch_size: int = 8,
    crop_px: int = 384,
    lr: float = 1e-3,
    ema_decay: float = 0.998,
    seed: int = 0,
    threads: int = 2,
    checkpoint_every_s: float = 120.0,
    arch: str = "unet24",
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Train the expert branch (resuming from ``out_dir/last.pt``); returns the path of ``final.pt``.

    The network's BatchNorms keep their folded statistics (eval mode throughout); only the branch learns.
    Planted scars and marks carry no acne label, so the branch learns to pass over them. ``split.json`` in
    ``out_dir`` names the photos trained on and those kept apart for calibration. ``progress(step, steps)``
    follows the training.
    """
    _refuse_ensemble(onnx_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    train_items, calib = expert_items(coco, half, calib_fraction, seed)
    (out / "split.json").write_text(
        json.dumps(
            {
                "points": str(coco),
                "half": half,
                "train": [i.path for i in train_items],
                "calibration": [i.path for i in calib],
            },
            indent=1,
        )
    )
    log.info("%d photos to train on, %d kept apart for calibration", len(train_items), len(calib))
    net = ExpertNet(network_from_onnx(onnx_path, arch)).eval()
    params = [p for p in net.branch.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sched = one_cycle(opt, lr, steps)
    ema = torch.optim.swa_utils.AveragedModel(
        net.branch, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema_decay), use_buffers=True
    )
    last = out / "last.pt"
    parts = {"branch": net.branch, "optimizer": opt, "scheduler": sched, "ema": ema}
    step = resume_training_state(last, **parts)
    if step:
        if sched.total_steps != one_cycle_steps(steps):
            # A new step budget on resume: continue the one-cycle schedule, stretched or shrunk to fit.
            sched = one_cycle(opt, lr, steps, last_epoch=step - 1)
        log.info("resumed from %s at step %d of %d", last, step, steps)
    ds = LesionDataset(train_items, crop_px, net.trunk.output_stride, length=10**9, seed=seed)
    ds.epoch = step
    loader = DataLoader(ds, batch_size=batch_size, num_workers=1)

    def checkpoint() -> None:
        save_training_state(last, step, **(parts | {"scheduler": sched}))  # the schedule may have been remade

    logf = open(out / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed in finally
    t0, seen, run_loss, run_steps, last_ckpt = time.monotonic(), 0, 0.0, 0, time.monotonic()
    try:
        if progress:
            progress(step, steps)
        it = iter(loader)
        while step < steps:
            x, heat, _, _ = next(it)
            target = heat[:, ACNE_CHANNELS].amax(1, keepdim=True)
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                f = net.trunk.last_decoder_input(x.contiguous(memory_format=torch.channels_last))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = net.branch(f.float())
            loss = focal_loss(logits.float(), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            ema.update_parameters(net.branch)
            step += 1
            seen += x.shape[0]
            run_loss += float(loss.detach())
            run_steps += 1
            if step % 50 == 0 or step == steps:
                rec = {
                    "step": step,
                    "loss": run_loss / run_steps,
                    "crops_per_s": seen / (time.monotonic() - t0),
                    "time": time.time(),
                }
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                run_loss, run_steps = 0.0, 0
            if progress:
                progress(step, steps)
            if time.monotonic() - last_ckpt >= checkpoint_every_s:
                checkpoint()
                last_ckpt = time.monotonic()
        checkpoint()
        final = out / "final.pt"
        with atomic_path(final) as tmp:
            torch.save({"branch": ema.module.state_dict(), "step": step, "onnx": str(onnx_path)}, tmp)
        return final
    finally:
        logf.close()


def export_expert_model(
    onnx_path: str | os.PathLike[str],
    branch_checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    metadata: dict[str, str] | None = None,
    arch: str = "unet24",
    opset: int = 17,
) -> float:
    """Write the network with its expert branch as one ONNX model (outputs ``maps`` and ``experts``),
    carrying the source model's metadata updated by ``metadata``; returns the largest difference of its
    ``maps`` from the source model's on a fixed input (the network itself must not change)."""
    import numpy as np
    import onnxruntime as ort

    _refuse_ensemble(onnx_path)
    net = ExpertNet(network_from_onnx(onnx_path, arch)).eval()
    net.branch.load_state_dict(load_checkpoint_file(branch_checkpoint)["branch"])
    out = Path(out)
    dummy = torch.zeros(1, 3, 256, 256)
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (dummy,),
            str(tmp),
            input_names=["image"],
            output_names=["maps", EXPERT_OUTPUT],
            dynamic_axes={
                "image": {0: "batch", 2: "height", 3: "width"},
                "maps": {0: "batch", 2: "oh", 3: "ow"},
                EXPERT_OUTPUT: {0: "batch", 2: "oh", 3: "ow"},
            },
            opset_version=opset,
            dynamo=False,
        )
        model = onnx.load(str(tmp))
        meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props} | (metadata or {})
        del model.metadata_props[:]
        for k, v in meta.items():
            model.metadata_props.add(key=k, value=v)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
    x = np.random.default_rng(0).standard_normal((1, 3, 160, 224)).astype(np.float32)
    runs: list[Any] = []
    for path in (onnx_path, out):
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        runs.append(s.run(["maps"], {s.get_inputs()[0].name: x})[0])
    return float(np.abs(runs[0] - runs[1]).max())


def branch_model(with_branch: str | os.PathLike[str]) -> tuple[onnx.ModelProto, str]:
    """The experts' branch of an exported model alone: a model from the feature tensor it reads (the last
    decoder block's input) to ``experts``. Returns the model and the name of that tensor.

    Raises:
        ValueError: the model has no experts' branch.
    """
    src = onnx.load(str(with_branch))
    nodes = [n for n in src.graph.node if any(o.startswith("/branch/") or o == EXPERT_OUTPUT for o in n.output)]
    if not any(EXPERT_OUTPUT in n.output for n in nodes):
        raise ValueError(f"{with_branch}: no '{EXPERT_OUTPUT}' branch to copy")
    made = {o for n in nodes for o in n.output}
    weights = {t.name: t for t in src.graph.initializer}
    reads = sorted({i for n in nodes for i in n.input if i and i not in made and i not in weights})
    if len(reads) != 1:
        raise ValueError(f"{with_branch}: the experts' branch reads {reads}, not one feature tensor")
    used = {i for n in nodes for i in n.input}
    channels = next(
        (int(weights[n.input[1]].dims[1]) for n in nodes if n.op_type == "Conv" and n.input[0] == reads[0]), None
    )
    graph = onnx.helper.make_graph(
        nodes,
        "experts_branch",
        [onnx.helper.make_tensor_value_info(reads[0], onnx.TensorProto.FLOAT, [1, channels, None, None])],
        [o for o in src.graph.output if o.name == EXPERT_OUTPUT],
        [t for t in src.graph.initializer if t.name in used],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = src.ir_version
    return model, reads[0]


def _values(model: onnx.ModelProto, tensor: str, tiles: Sequence[Any]) -> list[Any]:
    """A tensor's values in ``model`` for each input tile (the tensor made an extra output of a copy)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [session.run([tensor], {name: t})[0] for t in tiles]


def _quantize_branch(branch: onnx.ModelProto, feature: str, features: Sequence[Any]) -> onnx.ModelProto:
    """Static QDQ int8 (per-channel weights) of a branch model, calibrated on ``features``; its last
    convolution and the sigmoid stay in float, as the int8 network's heads do."""
    import tempfile

    from lesioncount.train.export import static_qdq

    last = [n.name for n in branch.graph.node if n.op_type == "Sigmoid" or EXPERT_OUTPUT in n.output]
    final_conv = [n.name for n in branch.graph.node if n.op_type == "Conv"][-1:]
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "branch.onnx", Path(tmp) / "branch.int8.onnx"
        onnx.save(branch, str(src))
        static_qdq(src, dst, ({feature: x} for x in features), last + final_conv)
        return onnx.load(str(dst))


def graft_expert_branch(
    with_branch: str | os.PathLike[str],
    target: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    calibration_tiles: Sequence[Any] | None = None,
) -> None:
    """Copy the experts' branch of one exported model into another model of the same network, such as its
    int8 twin, where it reads the same tensor (the last decoder block's input; its dequantised copy in a
    QDQ model). With ``calibration_tiles`` (normalised 1x3xHxW input tiles) the branch is quantised first
    (static QDQ, calibrated on the target's own features of those tiles; its last convolution and sigmoid
    in float), else it runs in float. The target's own outputs and metadata are untouched (set its
    ``expert_threshold`` after, e.g. with ``calibrate_expert_threshold(int8=...)``).

    Raises:
        ValueError: the source has no experts' branch, or the target lacks the tensor the branch reads.
    """
    branch, feature = branch_model(with_branch)
    dst = onnx.load(str(target))
    have = {o for n in dst.graph.node for o in n.output} | {i.name for i in dst.graph.input}
    if feature not in have:
        raise ValueError(f"{target}: lacks {feature}, which the experts' branch reads")
    if EXPERT_OUTPUT in {o.name for o in dst.graph.output}:
        raise ValueError(f"{target}: already has an '{EXPERT_OUTPUT}' output")
    # In a quantised (QDQ) target, read the dequantised copy of the tensor the network's own next layer
    # reads: a second float consumer of the tensor itself keeps ONNX Runtime from fusing the quantised ops
    # around it (per 608 px pass: 86 ms that way, 73 ms reading the copy, 37 ms without the branch).
    q_of = {n.input[0]: n.output[0] for n in dst.graph.node if n.op_type == "QuantizeLinear"}
    dq_of = {n.input[0]: n.output[0] for n in dst.graph.node if n.op_type == "DequantizeLinear"}
    source = dq_of.get(q_of.get(feature, ""), feature)
    if calibration_tiles:
        branch = _quantize_branch(branch, feature, _values(dst, source, calibration_tiles))

    # Every name of the branch gets a prefix (exporters and quantisers reuse names such as onnx::Conv_12 or
    # <tensor>_scale), except the tensor it reads, which becomes the target's, and its output.
    def renamed(name: str) -> str:
        if name == feature:
            return source
        return name if name in ("", EXPERT_OUTPUT) else f"expert_branch/{name}"

    for t in branch.graph.initializer:
        copy_t = onnx.TensorProto()
        copy_t.CopyFrom(t)
        copy_t.name = renamed(t.name)
        dst.graph.initializer.append(copy_t)
    for n in branch.graph.node:
        copy_node = onnx.NodeProto()
        copy_node.CopyFrom(n)
        copy_node.name = f"expert_branch/{n.name}"
        for k, name in enumerate(copy_node.input):
            copy_node.input[k] = renamed(name)
        for k, name in enumerate(copy_node.output):
            copy_node.output[k] = renamed(name)
        dst.graph.node.append(copy_node)
    dst.graph.output.extend(branch.graph.output)
    onnx.checker.check_model(dst)
    with atomic_path(out) as tmp:
        onnx.save(dst, str(tmp))
