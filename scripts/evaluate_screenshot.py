"""The screenshot of an evaluation report in docs/evaluate.md, from public-domain photos only.

    python scripts/evaluate_screenshot.py [--out docs/img/evaluate_report.png] [--photos 8]

Plants lesions on scikit-image's astronaut (public domain, as the demo does), counts each photo with the
shipped model, evaluates against the planted lesions, renders the report and takes a full-page screenshot
in headless Chromium (Debian's /usr/bin/chromium through Playwright). No ACNE04 photo is involved, so
the image may be committed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from lesioncount.data import ImageAnnotation, RefLesion, write_coco
from lesioncount.demo import demo_photo
from lesioncount.evaluate import EvalConfig
from lesioncount.evaluate.run import evaluate_photos, load_labels
from lesioncount.io import write_image
from lesioncount.report.evaluate_html import write_evaluation

CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/img/evaluate_report.jpg"))
    ap.add_argument("--photos", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        labels = []
        for seed in range(args.photos):
            image, planted = demo_photo(seed, upscale=2)
            name = f"astronaut_{seed}.jpg"
            write_image(root / "photos" / name, image, quality=95)
            refs = tuple(
                RefLesion(p.cls, p.x, p.y, None, max(p.radius, 2.0))
                for p in planted
                if p.cls in ("inflammatory", "comedone")
            )
            labels.append(ImageAnnotation(name, image.shape[1], image.shape[0], refs))
        write_coco(root / "labels.coco.json", labels)
        result = evaluate_photos(load_labels(root / "labels.coco.json"), root / "photos", EvalConfig(bootstrap=200))
        paths = write_evaluation(result, root / "eval")
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(paths["report"].resolve().as_uri())
            shot = root / "shot.png"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
        # The top of the page (headline, tables, plots), at two thirds of its size: small enough to commit.
        from PIL import Image

        with Image.open(shot) as im:
            w, h = im.size
            top = im.convert("RGB").crop((0, 0, w, min(h, 2400)))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            top.resize((w * 2 // 3, top.size[1] * 2 // 3), Image.Resampling.LANCZOS).save(args.out, quality=82)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
