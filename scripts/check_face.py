"""Face-stage figures on a folder of labelled photos (ACNE04 VOC layout): found, view, regions, re-takes.

    python scripts/check_face.py ../shared/data/acne04/valid [--overlays DIR] [--limit N]

Prints: share of photos with a face; views; share of the labelled lesions (box centres) in each region,
and off the counting area; and on one simulated re-take per photo (rotation <= 3 degrees, zoom
1.04-1.12x, +-0.3 stop, JPEG 90) the found and view flips and the change of face height against the zoom.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from rich.progress import track

from lesioncount.data import AnnotationError, voc_files
from lesioncount.evaluate.face_check import face_figures, region_overlay
from lesioncount.types import REGIONS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--overlays", type=Path, default=None, help="write skin/region overlays of the first 20 photos")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        xmls = voc_files(args.folder, limit=args.limit)
    except AnnotationError as e:
        print(e, file=sys.stderr)
        return 2
    if args.overlays:
        args.overlays.mkdir(parents=True, exist_ok=True)

    def overlay(i, image, face, ann) -> None:  # type: ignore[no-untyped-def]
        if args.overlays and i < 20:
            vis = region_overlay(image, face)
            for les in ann.lesions:
                cv2.circle(vis, (int(les.x), int(les.y)), 6, (255, 255, 255), 1)
            name = args.overlays / f"{Path(ann.file_name).stem[:40]}.jpg"
            cv2.imwrite(str(name), cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))

    f = face_figures(track(xmls, description="faces"), args.seed, on_face=overlay)
    dev = np.abs(np.array(f.height_change)) if f.height_change else np.zeros(1)
    print(f"photos {f.n_photos}: face found {f.found_share:.1%}; views {dict(f.views)}")
    print(f"lateral (left or right): {f.lateral_share:.1%}")
    print("labelled lesions by region: " + ", ".join(f"{r} {f.region_share(r):.1%}" for r in REGIONS))
    print(f"labelled lesions off the counting area: {f.off_area_share:.1%} of {f.n_lesions}")
    print(
        f"re-takes: found flips {f.found_flips}, view flips {f.view_flips}; face height vs zoom: "
        f"median |change| {np.median(dev):.1%}, max {dev.max():.1%}, over 5%: {(dev > 0.05).sum()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
