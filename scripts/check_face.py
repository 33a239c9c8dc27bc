"""Face-stage figures on a folder of labelled photos (ACNE04 VOC layout): found, view, regions, re-takes.

    python scripts/check_face.py ../shared/data/acne04/valid [--overlays DIR] [--limit N]

Prints: share of photos with a face; views; share of the labelled lesions (box centres) in each region,
and off the counting area; and on one simulated re-take per photo (rotation <= 3 degrees, zoom
1.04-1.12x, +-0.3 stop, JPEG 90) the found and view flips and the change of face height against the zoom.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import cv2
import numpy as np
from rich.progress import track

from lesioncount.data import read_voc_file
from lesioncount.evaluate.retake import retake
from lesioncount.face import analyse_face, counting_area
from lesioncount.types import REGIONS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--overlays", type=Path, default=None, help="write skin/region overlays of the first 20 photos")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    xmls = sorted(args.folder.glob("*.xml"))[: args.limit or None]
    if not xmls:
        print(f"{args.folder}: no VOC .xml files", file=sys.stderr)
        return 2
    found = 0
    views: collections.Counter[str] = collections.Counter()
    regions: collections.Counter[str] = collections.Counter()
    off_area = n_lesions = 0
    flips_found = flips_view = 0
    height_dev: list[float] = []
    rng = np.random.default_rng(args.seed)
    colours = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (128, 128, 128)], np.uint8)
    if args.overlays:
        args.overlays.mkdir(parents=True, exist_ok=True)
    for i, xml in enumerate(track(xmls, description="faces")):
        ann = read_voc_file(xml)
        bgr = cv2.imread(str(xml.with_name(ann.file_name)))
        if bgr is None:
            continue
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        face = analyse_face(image)
        found += face.found
        views[face.view] += 1
        area = counting_area(face)
        for les in ann.lesions:
            n_lesions += 1
            regions[face.region_at(les.x, les.y)] += 1
            ix, iy = int(les.x), int(les.y)
            off_area += not (0 <= iy < area.shape[0] and 0 <= ix < area.shape[1] and area[iy, ix])
        again = retake(image, rng)
        face2 = analyse_face(again.image)
        flips_found += face.found != face2.found
        flips_view += face.view != face2.view
        if face.height_px and face2.height_px:
            height_dev.append(face2.height_px / (face.height_px * again.zoom) - 1)
        if args.overlays and i < 20:
            vis = image.copy()
            vis[face.skin] = (0.55 * vis[face.skin] + 0.45 * colours[face.regions][face.skin]).astype(np.uint8)
            for les in ann.lesions:
                cv2.circle(vis, (int(les.x), int(les.y)), 6, (255, 255, 255), 1)
            cv2.imwrite(str(args.overlays / f"{xml.stem[:40]}.jpg"), cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))
    n = len(xmls)
    dev = np.abs(np.array(height_dev)) if height_dev else np.zeros(1)
    print(f"photos {n}: face found {found / n:.1%}; views {dict(views)}")
    lateral = (views["left"] + views["right"]) / n
    print(f"lateral (left or right): {lateral:.1%}")
    print("labelled lesions by region: " + ", ".join(f"{r} {regions[r] / max(1, n_lesions):.1%}" for r in REGIONS))
    print(f"labelled lesions off the counting area: {off_area / max(1, n_lesions):.1%} of {n_lesions}")
    print(
        f"re-takes: found flips {flips_found}, view flips {flips_view}; face height vs zoom: "
        f"median |change| {np.median(dev):.1%}, max {dev.max():.1%}, over 5%: {(dev > 0.05).sum()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
