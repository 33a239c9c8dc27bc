"""Make the pictures in docs/: the synthetic lesion gallery and the dense-target illustration.

Only public-domain skin is used (scikit-image's astronaut), never the ACNE04 photos, so the figures can
be committed. Run: ``python scripts/make_doc_figures.py`` (writes docs/img/*.png).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage import data  # noqa: E402

from lesioncount import synth  # noqa: E402
from lesioncount.train.targets import make_targets  # noqa: E402
from lesioncount.types import CLASSES  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "img"


def cheek_patch(size: int = 96) -> np.ndarray:
    """A patch of the astronaut's cheek enlarged to roughly the model's working scale (face ~500 px)."""
    face = data.astronaut()[95:175, 170:270]  # cheek and nose area
    big = cv2.resize(face, None, fx=4.5, fy=4.5, interpolation=cv2.INTER_CUBIC)
    y, x = 180, 40  # left cheek, below the eye
    return big[y : y + size, x : x + size].copy()


def gallery(path: Path) -> None:
    kinds = list(synth.KINDS)
    fig, axes = plt.subplots(3, len(kinds), figsize=(1.6 * len(kinds), 5.2))
    rng = np.random.default_rng(7)
    for j, kind in enumerate(kinds):
        lo, hi = synth.RADIUS_PX[kind]
        for i in range(3):
            patch = cheek_patch()
            out, mask = synth.render(patch, kind, 48, 48, lo + (hi - lo) * i / 2, rng)
            ax = axes[i, j]
            ax.imshow(out, interpolation="nearest")
            if i == 2:
                ax.contour(mask, levels=[0.5], colors="cyan", linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
        label = synth.KINDS[kind] or "not a lesion"
        axes[0, j].set_title(f"{kind}\n({label})", fontsize=8)
    fig.suptitle(
        "Synthetic lesions on real (public-domain) skin, at the model's working scale; bottom row: the exact mask",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def targets_figure(path: Path) -> None:
    rng = np.random.default_rng(3)
    base = cv2.resize(data.astronaut()[100:164, 175:239], (192, 192), interpolation=cv2.INTER_CUBIC)
    image, planted = synth.plant(base, {"papule": 3, "blackhead": 3, "boxcar": 2, "red_mark": 2}, rng, min_gap=1.0)
    centres = [(p.x, p.y, p.bbox[2], p.bbox[3], CLASSES.index(p.cls)) for p in planted if p.cls]
    heat, _, weight = make_targets(image.shape[:2], centres, len(CLASSES), 2)
    fig, axes = plt.subplots(1, 5, figsize=(14, 3.2))
    axes[0].imshow(image)
    for p in planted:
        axes[0].add_patch(
            plt.Circle(
                (p.x, p.y),
                p.radius * 1.6,
                fill=False,
                color="white" if p.cls is None else "black",
                lw=0.8,
                ls="--" if p.cls is None else "-",
            )
        )
    axes[0].set_title("crop (dashed: marks, not lesions)", fontsize=9)
    for k, name in enumerate(CLASSES):
        axes[k + 1].imshow(heat[k], vmin=0, vmax=1, cmap="magma")
        axes[k + 1].set_title(f"target heatmap: {name}", fontsize=9)
    axes[4].imshow(weight, cmap="gray")
    axes[4].set_title("size targets (log w, log h) live here", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    gallery(OUT / "synthetic_gallery.png")
    targets_figure(OUT / "targets.png")
    print(f"wrote {OUT}/synthetic_gallery.png and targets.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
