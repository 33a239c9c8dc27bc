"""Lesion fates on no-change re-takes: how many lesions visit comparison calls resolved or new when nothing
changed (issue 13's goal: resolved plus new at most 10% of the baseline's lesions).

    python scripts/compare_retakes.py --valid ../shared/data/acne04/valid [--limit 100] [--own-frame] [--out F]

Each photo is counted, then a simulated re-take of it (rotation up to 3 degrees, zoom 1.04-1.12x, +-0.3 stop,
JPEG 90; seeded, as ``scripts/model_goals.py`` does) is counted, and the two are compared as two visits of
one view with ``lesioncount.compare.compare_visits`` (registration, the re-take counted again in the
baseline's frame unless ``--own-frame``, lesion matching). Reported: the share
(resolved + new) / baseline lesions over all pairs and over the pairs the tool calls comparable (the
others it tells the user not to trust), with 95% bootstrap intervals, the share called comparable, and the
median registration quality. Nothing here is a test: it needs the real photos.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.progress import track

from lesioncount.bootstrap import bootstrap_ci
from lesioncount.compare import Visit, compare_visits
from lesioncount.data import voc_files
from lesioncount.evaluate.retake import retake
from lesioncount.pipeline import LesionCounter


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--valid", type=Path, default=Path("../shared/data/acne04/valid"))
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--own-frame", action="store_true", help="compare each photo's own count (no recount in the baseline's frame)"
    )
    args = ap.parse_args()
    counter = LesionCounter(threads=args.threads)
    rng = np.random.default_rng(args.seed)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for xml in track(voc_files(args.valid, limit=args.limit), description="pairs"):
        path = next(p for p in (xml.with_suffix(".jpg"), xml.with_suffix(".jpeg")) if p.exists())
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        again = retake(image, rng).image
        a, b = counter.count(image, name=path.name), counter.count(again, name="retake-" + path.name)
        vc = compare_visits(
            [
                Visit(result=a, image=image, date=dt.date(2026, 1, 1), view="left", label="baseline"),
                Visit(result=b, image=again, date=dt.date(2026, 1, 15), view="left", label="re-take"),
            ],
            counter=None if args.own_frame else counter,
        )
        pair = vc.pairs[0]
        m = pair.match
        rows.append(
            {
                "file": path.name,
                "n_base": len(a.lesions),
                "n_follow_own": len(b.lesions),
                "n_follow": len(vc.visits[1].result.lesions),
                "in_baseline_frame": pair.counted_in_baseline_frame,
                "resolved": len(m.resolved) if m else None,
                "new": len(m.new) if m else None,
                "persisting": len(m.pairs) if m else None,
                "uncertain": len(m.base_uncertain) + len(m.follow_uncertain) if m else None,
                "by_class": {c: {k: v for k, v in t.items() if k in ("resolved", "new")} for c, t in m.tally().items()}
                if m
                else None,
                "comparable": bool(pair.comparability and pair.comparability.comparable),
                "quality": pair.registration.quality if pair.registration else None,
            }
        )
    elapsed = time.perf_counter() - t0
    print(f"re-takes counted in the baseline's frame: {sum(r['in_baseline_frame'] for r in rows)} of {len(rows)}")
    ok = [r for r in rows if r["resolved"] is not None]

    def share(idx: np.ndarray) -> dict[str, float]:
        sel = [ok[i] for i in idx]
        base = sum(r["n_base"] for r in sel)
        return {"fates_share": (sum(r["resolved"] + r["new"] for r in sel) / base) if base else 0.0}

    figs = share(np.arange(len(ok)))
    cis = bootstrap_ci(len(ok), share, n_boot=1000, rng=args.seed)
    comp_idx = np.array([i for i, r in enumerate(ok) if r["comparable"]], int)
    comp_ci = bootstrap_ci(len(comp_idx), lambda idx: share(comp_idx[idx]), n_boot=1000, rng=args.seed)
    out = {
        "pairs": len(rows),
        "fates_share": figs["fates_share"],
        "fates_share_ci": cis["fates_share"],
        "comparable_share": float(np.mean([r["comparable"] for r in rows])) if rows else 0.0,
        "fates_share_comparable": share(comp_idx)["fates_share"],
        "fates_share_comparable_ci": comp_ci["fates_share"],
        "median_quality": float(np.median([r["quality"] for r in ok if r["quality"] is not None])) if ok else None,
        "baseline_lesions": sum(r["n_base"] for r in ok),
        "resolved": sum(r["resolved"] for r in ok),
        "new": sum(r["new"] for r in ok),
        "uncertain": sum(r["uncertain"] for r in ok),
        "by_class": {
            c: {k: sum(r["by_class"][c][k] for r in ok) for k in ("resolved", "new")}
            for c in ("inflammatory", "comedone", "scar")
        },
        "seconds": round(elapsed, 1),
    }
    print(json.dumps(out, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out | {"rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
