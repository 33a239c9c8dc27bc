"""The patient timeline report: HTML (and PDF through WeasyPrint) for a ``VisitComparison``.

Presentation only: every figure comes from ``lesioncount.compare``. The page holds, per view, a timeline
chart of counts per class, the durability summary, and per follow-up the comparability verdict, aligned
before/after crops with every lesion marked by its fate (resolved, persisting, new), and the change tables.
Images are embedded (base64), so the HTML is one self-contained file.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lesioncount.compare.comparability import normalise_colour
from lesioncount.compare.core import PairComparison, VisitComparison
from lesioncount.compare.register import invert, map_points
from lesioncount.count import RETEST_NOISE
from lesioncount.endpoints import Change
from lesioncount.types import COUNT_KEYS, REGIONS, TOTAL_ACNE, Lesion

#: RGB colour per lesion fate (Okabe-Ito: distinguishable with the common colour-vision deficiencies).
STATUS_COLOURS: dict[str, tuple[int, int, int]] = {
    "resolved": (0, 158, 115),
    "persisting": (230, 159, 0),
    "new": (213, 94, 0),
    "uncertain": (86, 180, 233),
    "out_of_view": (150, 150, 150),
}
#: Line colour per class in the timeline chart.
CLASS_LINE_COLOURS: dict[str, str] = {
    "inflammatory": "#d55e00",
    "comedone": "#0072b2",
    "scar": "#999999",
    TOTAL_ACNE: "#000000",
}
CHANGE_ROWS = ("inflammatory", "comedone", TOTAL_ACNE, "scar")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px} h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin-top:24px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left}
.warn{background:#fff4e5;border-left:4px solid #e69f00;padding:6px 10px;margin:6px 0;font-size:13px}
.bad{background:#fdecea;border-left:4px solid #d55e00}
.ok{background:#e9f7f1;border-left:4px solid #009e73}
.pair{display:flex;gap:12px;flex-wrap:wrap} .pair figure{margin:0} figcaption{font-size:12px;color:#555}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:4px;vertical-align:middle}
.small{font-size:12px;color:#555} td .small{font-size:0.9em} td.noise{color:#888}
img{max-width:100%}
table.meta td{border:none;padding:1px 12px 1px 0;text-align:left;color:#555}
@media print{
  body{margin:0;max-width:none;font-size:11px}
  table{font-size:9.5px;width:100%;page-break-inside:avoid;break-inside:avoid}
  td,th{padding:2px 4px;overflow-wrap:break-word;hyphens:auto}
  .pair{display:block} .pair figure{display:inline-block;width:48%;vertical-align:top}
  h2,h3{break-after:avoid} .warn,.ok{break-inside:avoid}
}
@page{size:A4;margin:12mm}
"""


def _data_uri(image: npt.NDArray[np.uint8], *, jpeg: bool = True) -> str:
    from PIL import Image

    buf = io.BytesIO()
    if jpeg:
        Image.fromarray(image).save(buf, format="JPEG", quality=88)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _e(x: object) -> str:
    return html.escape(str(x))


def _pct(p: float | None) -> str:
    return "n/a" if p is None else f"{p:+.0f}%"


def _crop_box(box: Sequence[float] | None, shape: tuple[int, ...], pad: float = 0.25) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    if box is None:
        return 0, 0, w, h
    x, y, bw, bh = box
    x0, y0 = int(max(0, x - pad * bw)), int(max(0, y - pad * bh))
    x1, y1 = int(min(w, x + bw * (1 + pad))), int(min(h, y + bh * (1 + pad)))
    return x0, y0, x1, y1


def _mark(
    image: npt.NDArray[np.uint8],
    items: Sequence[tuple[float, float, float, str]],
    origin: tuple[int, int],
    scale: float,
) -> npt.NDArray[np.uint8]:
    """Draw ``(x, y, radius, status)`` markers (source pixels) on an already cropped and scaled image."""
    out = image.copy()
    t = max(1, round(out.shape[1] / 300))
    for x, y, r, status in items:
        cx, cy = round((x - origin[0]) * scale), round((y - origin[1]) * scale)
        rr = max(4, round(r * scale) + 3)
        colour = STATUS_COLOURS[status]
        if status == "new":  # a square: new lesions stand out by shape as well as colour
            cv2.rectangle(out, (cx - rr, cy - rr), (cx + rr, cy + rr), colour, t, cv2.LINE_AA)
        elif status == "uncertain":  # a diamond: seen in both photos, once just under the threshold
            pts = np.array([(cx, cy - rr), (cx + rr, cy), (cx, cy + rr), (cx - rr, cy)], np.int32)
            cv2.polylines(out, [pts], True, colour, t, cv2.LINE_AA)
        else:
            cv2.circle(out, (cx, cy), rr, colour, t, cv2.LINE_AA)
            if status == "persisting":
                cv2.circle(out, (cx, cy), rr + 2 * t, colour, t, cv2.LINE_AA)
    return out


def _radius(les: Lesion) -> float:
    return float(max(les.bbox[2], les.bbox[3]) / 2)


def before_after_crops(
    comparison: VisitComparison, pair: PairComparison, *, width_px: int = 420
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], str] | None:
    """Baseline face crop and the aligned, colour-normalised follow-up crop, lesions marked by fate.

    Returns:
        ``(baseline crop, follow-up crop, colour note)`` as uint8 RGB, or None without photos or a match.
    """
    base = comparison.visits[pair.baseline_index]
    follow = comparison.visits[pair.followup_index]
    if base.image is None or follow.image is None or pair.registration is None or pair.match is None:
        return None
    m = pair.match
    h, w = base.image.shape[:2]
    x0, y0, x1, y1 = _crop_box(base.result.face.box, base.image.shape)
    # Widen the crop to every lesion either photo shows inside the baseline frame.
    pts = [(les.x, les.y) for les in m.base_lesions] + list(m.follow_xy_in_base)
    for x, y in pts:
        if 0 <= x < w and 0 <= y < h:
            x0, y0, x1, y1 = min(x0, int(x) - 12), min(y0, int(y) - 12), max(x1, int(x) + 13), max(y1, int(y) + 13)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    scale = width_px / max(1, x1 - x0)
    size = (width_px, max(1, round((y1 - y0) * scale)))
    b_crop = np.asarray(
        cv2.resize(np.ascontiguousarray(base.image[y0:y1, x0:x1]), size, interpolation=cv2.INTER_AREA), np.uint8
    )
    f_crop, valid = _aligned_crop(follow.image, pair.registration.affine, (x0, y0, x1, y1), size)
    note = "follow-up shown as photographed"
    bs, fs = comparison.photo_stats[pair.baseline_index], comparison.photo_stats[pair.followup_index]
    if bs is not None and fs is not None:
        f_crop, note = normalise_colour(f_crop, bs, fs)
    f_crop[~valid] = 255
    s_base = pair.registration.scale
    b_items = [(les.x, les.y, _radius(les), st) for les, st in zip(m.base_lesions, m.status_of_base(), strict=True)]
    f_items = [
        (xy[0], xy[1], _radius(les) * s_base, st)
        for les, xy, st in zip(m.follow_lesions, m.follow_xy_in_base, m.status_of_follow(), strict=True)
    ]
    return _mark(b_crop, b_items, (x0, y0), scale), _mark(f_crop, f_items, (x0, y0), scale), note


def _aligned_crop(
    follow_image: npt.NDArray[np.uint8],
    matrix: npt.NDArray[np.float64],
    crop: tuple[int, int, int, int],
    size: tuple[int, int],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """The follow-up resampled into a baseline crop of ``size``: shrunk first, warped at twice the output size,
    then area-averaged, so large photos neither alias nor cost a full-size warp."""
    x0, y0, x1, y1 = crop
    out_per_base = size[0] / max(1, x1 - x0)
    inter = min(1.0, 2 * out_per_base)
    follow_to_base = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    pre = min(1.0, inter * follow_to_base)
    # Only the part of the follow-up that lands in the crop is shrunk and warped (plus a few pixels for the
    # interpolation): a face crop is a fraction of a 12 MP frame.
    back = map_points(invert(matrix), [[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
    fh, fw = follow_image.shape[:2]
    fx0, fy0 = (max(0, int(np.floor(v)) - 4) for v in back.min(axis=0))
    fx1, fy1 = min(fw, int(np.ceil(back[:, 0].max())) + 5), min(fh, int(np.ceil(back[:, 1].max())) + 5)
    if fx1 <= fx0 or fy1 <= fy0:  # the crop shows none of the follow-up
        fx0, fy0, fx1, fy1 = 0, 0, fw, fh
    src = np.ascontiguousarray(follow_image[fy0:fy1, fx0:fx1])
    if pre < 1.0:
        src = np.asarray(cv2.resize(src, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA), np.uint8)
    a = (
        np.array([[inter, 0, -x0 * inter], [0, inter, -y0 * inter], [0, 0, 1]])
        @ np.vstack([matrix, [0, 0, 1]])
        @ np.array([[1.0, 0.0, fx0], [0.0, 1.0, fy0], [0.0, 0.0, 1.0]])
        @ np.diag([1 / pre, 1 / pre, 1])
    )[:2]
    inter_size = (max(1, round((x1 - x0) * inter)), max(1, round((y1 - y0) * inter)))
    warped = cv2.warpAffine(src, a, inter_size, flags=cv2.INTER_CUBIC)
    ones = np.full(src.shape[:2], 255, np.uint8)
    valid = cv2.warpAffine(ones, a, inter_size, flags=cv2.INTER_NEAREST)
    crop_img = np.asarray(cv2.resize(warped, size, interpolation=cv2.INTER_AREA), np.uint8)
    valid_out = cv2.resize(valid, size, interpolation=cv2.INTER_NEAREST) > 0
    return crop_img, valid_out


def timeline_png(comparison: VisitComparison, view: str) -> bytes:
    """A PNG chart of counts per class over the visits of one view (days since baseline when dated)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    visits = [v for v in comparison.visits if v.view == view]
    dated = all(v.date is not None for v in visits)
    xs: list[float] = (
        [float((v.date - visits[0].date).days) for v in visits] if dated else list(range(len(visits)))  # type: ignore[operator]
    )
    fig = Figure(figsize=(8.0, 3.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for cls in ("inflammatory", "comedone", TOTAL_ACNE, "scar"):
        ys = [v.result.counts.get(cls, 0) for v in visits]
        style = "-" if cls != TOTAL_ACNE else "--"
        ax.plot(xs, ys, style, marker="o", color=CLASS_LINE_COLOURS[cls], label=cls.replace("_", " "))
    for i, v in enumerate(visits):
        if v.treatment:
            ax.axvline(xs[i], color="#009e73", alpha=0.5, lw=1)
            ax.annotate("treatment", (xs[i], 0), textcoords="offset points", xytext=(3, 3), fontsize=7, color="#009e73")
    # Follow-ups whose photos are not comparable with the baseline: a hollow grey ring on each class's point.
    position = {id(v): k for k, v in enumerate(visits)}
    for pair in comparison.pairs_for(view):
        if pair.comparability is not None and not pair.comparability.comparable:
            k = position[id(comparison.visits[pair.followup_index])]
            for cls in ("inflammatory", "comedone", TOTAL_ACNE, "scar"):
                y = visits[k].result.counts.get(cls, 0)
                ax.plot([xs[k]], [y], "o", ms=13, mfc="none", mec="#777777", mew=1.5)
            ax.annotate(
                "not comparable", (xs[k], 0), textcoords="offset points", xytext=(3, 14), fontsize=7, color="#777777"
            )
    dur = comparison.durability.get(view, {}).get("inflammatory")
    if dur is not None and dur.rebound_index is not None:
        k = position[id(comparison.visits[dur.visit_indices[dur.rebound_index]])]
        ax.annotate(
            "rebound", (xs[k], dur.counts[dur.rebound_index]), textcoords="offset points", xytext=(-10, 8), fontsize=8
        )
    ax.set_xlabel("days since baseline" if dated else "visit")
    ax.set_ylabel("lesions")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    # Fixed margins that fit the labels and the legend: tight_layout would draw the figure once more.
    fig.subplots_adjust(left=0.09, right=0.82, bottom=0.16, top=0.96)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _age(years: float | None) -> str:
    """An age for the visit table: whole years, or the two it lies between when only the birth year is known."""
    if years is None:
        return ""
    if years % 1 == 0.5:  # the middle of the year of birth's two possible ages
        return f"{math.floor(years)}-{math.ceil(years)}"
    return f"{years:g}"


_NOISE_NOTE = " <span class=small>(within re-take noise)</span>"


def _in_noise(c: Change) -> bool:
    """A change, and one no larger than a re-take of an unchanged face shows (no change is no noise)."""
    return bool(c.absolute) and c.within_retest_noise


def _change_table(pair: PairComparison, threshold: float) -> str:
    rows = []
    for k in CHANGE_ROWS:
        c = pair.change[k]
        flag = pair.responder.get(k)
        resp = "n/a" if flag is None else ("yes" if flag else "no")
        in_noise = _in_noise(c)
        noise = _NOISE_NOTE if in_noise else ""
        if flag and in_noise:  # 2 -> 1 is "50% fewer", and no evidence of a response
            resp += _NOISE_NOTE
        rows.append(
            f"<tr><td class=l>{_e(k.replace('_', ' '))}</td><td>{c.baseline}</td><td>{c.followup}</td>"
            f"<td>{c.absolute:+d}{noise}</td><td>{_pct(c.percent)}</td><td>{resp}</td></tr>"
        )
    g = pair.grades
    grade_rows = []
    for name in ("hayashi", "gags"):
        if g.get(name):
            gg = g[name]
            basis = ""
            noise = ""
            if name == "hayashi" and gg.get("baseline_n") is not None and gg.get("followup_n") is not None:
                half = " on the worse half" if "worse half" in str(gg.get("basis") or "") else ""
                basis = f" (from {gg['baseline_n']} → {gg['followup_n']} lesions{half})"
                counted = Change(int(gg["baseline_n"]), int(gg["followup_n"]))
                if gg["change"] and counted.within_retest_noise:  # a grade boundary crossed by noise
                    noise = _NOISE_NOTE
            grade_rows.append(
                f"<tr><td class=l>{name.upper() if name == 'gags' else 'Hayashi grade'}</td><td>{gg['baseline']}</td>"
                f"<td>{gg['followup']}</td><td>{gg['change']:+d}{noise}</td><td colspan=2 class=l>"
                f"{_e(gg.get('baseline_label'))} → {_e(gg.get('followup_label'))}{_e(basis)}</td></tr>"
            )
    return (
        "<table><tr><th class=l>count</th><th>baseline</th><th>follow-up</th><th>change</th><th>%</th>"
        f"<th>≥{threshold:g}% fewer</th></tr>" + "".join(rows) + "".join(grade_rows) + "</table>"
    )


def _fate_table(pair: PairComparison) -> str:
    if pair.match is None:
        return "<p class=small>No lesion-level matching (a photo is missing).</p>"
    t = pair.match.tally()
    rows = "".join(
        f"<tr><td class=l>{_e(c.replace('_', ' '))}</td><td>{t[c]['resolved']}</td><td>{t[c]['persisting']}</td>"
        f"<td>{t[c]['new']}</td><td>{t[c]['uncertain']}</td><td>{t[c]['out_of_view']}</td></tr>"
        for c in COUNT_KEYS
    )
    return (
        "<table><tr><th class=l>lesions</th><th>resolved</th><th>persisting</th><th>new</th><th>uncertain</th>"
        f"<th>not in both photos</th></tr>{rows}</table><p class=small>matched within "
        f"{pair.match.tolerance_px:.0f} px of the aligned position; uncertain: counted in one photo and just "
        "under the counting threshold in the other (neither resolved nor new)</p>"
    )


def _region_table(pair: PairComparison) -> str:
    rows = []
    for r in [*REGIONS, *[r for r in pair.region_change if r not in REGIONS]]:
        ch = pair.region_change.get(r)
        if ch is None or all(ch[k].baseline == 0 and ch[k].followup == 0 for k in ch):
            continue
        cells = "".join(_region_cell(ch[k]) for k in CHANGE_ROWS)
        rows.append(f"<tr><td class=l>{_e(r.replace('_', ' '))}</td>{cells}</tr>")
    if not rows:
        return ""
    head = "".join(f"<th>{_e(k.replace('_', ' '))}</th>" for k in CHANGE_ROWS)
    return (
        f"<table><tr><th class=l>region</th>{head}</tr>{''.join(rows)}</table>"
        "<p class=small>Grey: a change within re-take noise (no percent is given for it). Small counts per "
        "region move most: a lesion near a region's border can fall on either side from one photo to the next.</p>"
    )


def _region_cell(c: Change) -> str:
    """One region's count change: grey and without a percent when a re-take of an unchanged face could show it."""
    if _in_noise(c):
        return f"<td class=noise>{c.baseline} → {c.followup}</td>"
    return f"<td>{c.baseline} → {c.followup} ({_pct(c.percent)})</td>"


def _secondary_html(sec: dict[str, Any]) -> str:
    if not sec.get("shown"):
        return f"<p class=small>Shine and redness not compared: {_e(sec.get('reason'))}.</p>"
    b, f = sec["baseline"], sec["followup"]
    return (
        "<table><tr><th class=l>skin measure</th><th>baseline</th><th>follow-up</th><th>change</th></tr>"
        f"<tr><td class=l>shine (highlight share of skin)</td><td>{100 * b['shine_fraction']:.2f}%</td>"
        f"<td>{100 * f['shine_fraction']:.2f}%</td><td>{100 * sec['shine_change']:+.2f} pts</td></tr>"
        f"<tr><td class=l>redness (erythema index)</td><td>{b['erythema_index']:.1f}</td>"
        f"<td>{f['erythema_index']:.1f}</td><td>{sec['erythema_change']:+.1f}</td></tr></table>"
        f"<p class=small>{_e(sec['caveat'])}</p>"
    )


#: How each registration method aligned the photos, in words (``+ecc``: then refined on the pixels).
_ALIGN_WORDS = {
    "landmarks": "on the facial landmarks",
    "features": "on skin and face detail",
    "face-box": "on the face outline only",
    "identity": "as taken (no alignment was found)",
}


def _align_words(method: str) -> str:
    base, _, refined = method.partition("+")
    words = _ALIGN_WORDS.get(base, "on image detail")
    return words + (", then refined" if refined else "")


def _caption(role: str, name: str) -> str:
    """``"baseline 2026-01-12"``, but ``"baseline"`` (not "baseline baseline") when the visit is so named."""
    return role if name.strip().lower() == role else f"{role} {name}"


def _pair_html(comparison: VisitComparison, pair: PairComparison, crop_px: int) -> str:
    base = comparison.visits[pair.baseline_index]
    follow = comparison.visits[pair.followup_index]
    days = f", day {pair.days:.0f}" if pair.days is not None else ""
    parts = [f"<h3>{_e(follow.name)} vs {_e(_caption('baseline', base.name))}{days}</h3>"]
    comp = pair.comparability
    if comp is not None:
        cls = "ok" if comp.comparable and not comp.warnings else "warn" if comp.comparable else "warn bad"
        verdict = "comparable" if comp.comparable else "NOT comparable: read the change with caution"
        reg = pair.registration
        quality = f"; the photos were aligned {_align_words(reg.method)}, alignment {reg.quality_label}" if reg else ""
        if pair.counted_in_baseline_frame:
            quality += "; the follow-up was counted aligned to the baseline, on the same skin at the same scale"
        parts.append(f"<div class='{cls}'>Photo match {100 * comp.score:.0f}%: {verdict}{_e(quality)}")
        parts += [f"<br>• {_e(w)}" for w in comp.warnings]
        parts.append("</div>")
    crops = before_after_crops(comparison, pair, width_px=crop_px)
    if crops is not None:
        b_img, f_img, note = crops
        parts.append(
            "<div class=pair>"
            f"<figure><img src='{_data_uri(b_img)}' alt='baseline'><figcaption>{_e(_caption('baseline', base.name))}"
            "</figcaption></figure>"
            f"<figure><img src='{_data_uri(f_img)}' alt='follow-up aligned'><figcaption>"
            f"{_e(_caption('follow-up', follow.name))}, aligned to baseline ({_e(note)})</figcaption></figure></div>"
        )
        parts.append(
            "<div class=legend>"
            + "".join(
                f"<span><i class=dot style='background:rgb{STATUS_COLOURS[s]}'></i>{label}</span>"
                for s, label in (
                    ("resolved", "resolved (circle, baseline)"),
                    ("persisting", "persisting (double circle)"),
                    ("new", "new (square, follow-up)"),
                    ("uncertain", "uncertain (diamond)"),
                    ("out_of_view", "not in both photos"),
                )
            )
            + "</div>"
        )
    parts += [_change_table(pair, comparison.responder_threshold_pct), _fate_table(pair), _region_table(pair)]
    parts.append(_secondary_html(pair.secondary))
    return "\n".join(parts)


def _visits_table(comparison: VisitComparison) -> str:
    rows = []
    for i, v in enumerate(comparison.visits):
        c, g = v.result.counts, v.result.grades
        gags = g.get("gags")
        me = comparison.measures[i]
        rows.append(
            f"<tr><td class=l>{_e(v.name)}</td><td class=l>{_e(v.view)}</td>"
            f"<td>{_age(v.age_years)}</td><td class=l>{_e(v.treatment or '')}</td>"
            + "".join(f"<td>{c.get(k, 0)}</td>" for k in CHANGE_ROWS)
            + f"<td>{g['hayashi']['grade'] if g.get('hayashi') else '-'}</td>"
            + f"<td>{'' if not gags else gags['score']}</td>"
            f"<td>{'' if me is None else f'{100 * me.shine_fraction:.2f}%'}</td>"
            f"<td>{'' if me is None else f'{me.erythema_index:.1f}'}</td></tr>"
        )
    head = "".join(f"<th>{_e(k.replace('_', ' '))}</th>" for k in CHANGE_ROWS)
    return (
        "<table><tr><th class=l>visit</th><th class=l>view</th><th>age</th><th class=l>treatment</th>"
        f"{head}<th>Hayashi</th><th>GAGS</th><th>shine</th><th>redness</th></tr>{''.join(rows)}</table>"
        "<p class=small>Shine and redness per visit are photo measures; compare them only where the pair below "
        "says the lighting is comparable.</p>"
    )


def _header(comparison: VisitComparison, *, clinic: str | None, clinician: str | None) -> str:
    """Who made the report, when, and with which model: the facts a reader of a printed report needs."""
    from lesioncount import __version__

    models = sorted({f"{v.result.model.name} {v.result.model.version}" for v in comparison.visits})
    rows = [
        ("clinic", clinic),
        ("clinician", clinician),
        ("report date", dt.date.today().isoformat()),
        ("counted by", f"lesioncount {__version__}, model {', '.join(models)}"),
    ]
    cells = "".join(f"<tr><td class=l>{_e(k)}</td><td class=l>{_e(v)}</td></tr>" for k, v in rows if v)
    return f"<table class=meta>{cells}</table>"


def render_visits_html(
    comparison: VisitComparison,
    *,
    title: str = "Treatment response",
    crop_px: int = 420,
    clinic: str | None = None,
    clinician: str | None = None,
) -> str:
    """A self-contained HTML report of a ``VisitComparison``.

    Args:
        comparison: from ``lesioncount.compare.compare_visits``.
        title: page title (a patient code, say; avoid names in shared reports).
        crop_px: width of each before/after crop in pixels.
        clinic, clinician: named in the report's header when given.

    Returns:
        The HTML page as a string (images embedded).
    """
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>"
    ]
    parts.append(_header(comparison, clinic=clinic, clinician=clinician))
    for w in dict.fromkeys(comparison.warnings):  # each warning once, in order
        bad = "contraindicated" in w
        parts.append(f"<div class='warn{' bad' if bad else ''}'>{_e(w)}</div>")
    parts.append("<h2>Visits</h2>" + _visits_table(comparison))
    for view in comparison.views:
        parts.append(f"<h2>{_e(view.capitalize())} view</h2>")
        n = sum(v.view == view for v in comparison.visits)
        if n >= 2:
            png = timeline_png(comparison, view)
            parts.append(f"<img alt='timeline' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>")
        said: set[str] = set()
        for cls, dur in comparison.durability.get(view, {}).items():
            best = "n/a" if dur.best_reduction_pct is None else f"{dur.best_reduction_pct:.0f}% fewer"
            nadir_visit = dur.visit_indices[dur.nadir_index] + 1 if dur.visit_indices else dur.nadir_index + 1
            line = f"{cls.replace('_', ' ')}: best {best} at visit {nadir_visit}"
            rising = not dur.rebound and (dur.regained_fraction or 0) > 0 and dur.counts[-1] > dur.counts[-2]
            line += "; rebound" if dur.rebound else ("; rising again, not yet a rebound" if rising else "; no rebound")
            if dur.excluded:
                shown = ", ".join(str(i + 1) for i in dur.excluded)
                line += f" (from comparable visits only; visit {shown} left out)"
            box = "warn" if dur.rebound or rising else "ok"
            hint = dur.hint if dur.hint and dur.hint not in said else None
            said.add(dur.hint or "")
            parts.append(f"<div class={box}>{_e(line)}{'<br>' + _e(hint) if hint else ''}</div>")
        for pair in comparison.pairs_for(view):
            parts.append(_pair_html(comparison, pair, crop_px))
    parts.append(
        "<p class=small>Counts are machine counts (lesioncount); percent change is (follow-up − baseline) / "
        "baseline. A responder has at least the stated share fewer lesions than at baseline. Re-take noise: "
        f"photographed twice with nothing changed, the count stays within max({RETEST_NOISE[0]} lesions, "
        f"{100 * RETEST_NOISE[1]:.0f}%) on most photos (93-94% in our tests), so a change that small may be no "
        "change at all. Not a diagnosis.</p>"
        "</body></html>"
    )
    return "\n".join(parts)


def render_visits_document(
    comparison: VisitComparison,
    *,
    title: str = "Treatment response",
    clinic: str | None = None,
    clinician: str | None = None,
) -> Any:
    """The report laid out as printed pages (a WeasyPrint ``Document``: pages, boxes, ``write_pdf``)."""
    import logging

    from weasyprint import HTML

    # WeasyPrint logs every unsupported CSS property at WARNING; ours are deliberate fallbacks.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    page = render_visits_html(comparison, title=title, crop_px=320, clinic=clinic, clinician=clinician)
    return HTML(string=page).render()


def render_visits_pdf(
    comparison: VisitComparison,
    *,
    title: str = "Treatment response",
    clinic: str | None = None,
    clinician: str | None = None,
) -> bytes:
    """The same report as a PDF (WeasyPrint), A4 pages."""
    doc = render_visits_document(comparison, title=title, clinic=clinic, clinician=clinician)
    return bytes(doc.write_pdf())
