"""Trial-style endpoints from counts: change from baseline, responders, durability, rebound, safety.

Everything here works on plain counts and dates, so it is exact and easy to check by hand. Percent change
is ``100 * (follow-up - baseline) / baseline`` (negative = fewer lesions) and is None when the baseline is 0.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lesioncount.count import retest_band
from lesioncount.types import COUNT_KEYS, TOTAL_ACNE

#: Count keys reported for change (classes plus the active-acne total).
CHANGE_KEYS: tuple[str, ...] = COUNT_KEYS
#: A responder has at least this percent fewer lesions of the class than at baseline.
RESPONDER_PCT = 50.0
#: A rebound is a climb from the nadir of at least this fraction of the improvement ...
REBOUND_FRACTION = 0.5
#: ... and of at least this many lesions.
REBOUND_MIN_LESIONS = 3
#: Botulinum toxin suppresses sebum for about 4 to 6 months (DOMAIN.md).
TOXIN_EFFECT_DAYS: tuple[int, int] = (120, 180)
#: Botulinum toxin is contraindicated under this age.
TOXIN_MIN_AGE_YEARS = 18
#: Generic names, abbreviations (BTX-A, BoNT/A, BTA, "btx") and brands (Botox, Vistabel, Dysport, Azzalure,
#: Xeomin, Bocouture, Daxxify, Jeuveau, Nuceiva, Letybo, Relfydess, Alluzience, Meditoxin, Neuronox,
#: Innotox, Botulax, Nabota, Hutox, Relatox, Lantox, Prosigne).
_TOXIN = re.compile(
    r"botul|botox|\bbont|\bbtx|\bbta\b|toxin|dysport|xeomin|bocouture|azzalure|vistabel|daxxify|jeuveau|nuceiva"
    r"|letybo|relfydess|alluzience|meditox|neuronox|innotox|botulax|nabota|hutox|relatox|lantox|prosigne",
    re.I,
)


def is_botulinum_toxin(treatment: str | None) -> bool:
    """Whether a free-text treatment names botulinum toxin (generic or a brand)."""
    return bool(treatment) and bool(_TOXIN.search(treatment or ""))


@dataclass(frozen=True)
class Change:
    """Change of one count from baseline to a follow-up."""

    baseline: int
    followup: int

    @property
    def absolute(self) -> int:
        """Follow-up minus baseline (negative = fewer)."""
        return self.followup - self.baseline

    @property
    def percent(self) -> float | None:
        """Percent change from baseline, None when the baseline is 0."""
        return None if self.baseline == 0 else 100.0 * (self.followup - self.baseline) / self.baseline

    @property
    def within_retest_noise(self) -> bool:
        """The change is no larger than what a re-take of an unchanged face shows (``RETEST_NOISE``)."""
        return abs(self.absolute) <= retest_band(self.baseline)

    def to_dict(self) -> dict[str, Any]:
        p = self.percent
        return {
            "baseline": self.baseline,
            "followup": self.followup,
            "absolute": self.absolute,
            "percent": None if p is None else round(p, 2),
            "within_retest_noise": self.within_retest_noise,
        }


def count_change(base_counts: Mapping[str, int], follow_counts: Mapping[str, int]) -> dict[str, Change]:
    """Change per class plus ``total_acne``; a missing key counts as 0 (``total_acne`` is derived if absent)."""

    def get(c: Mapping[str, int], k: str) -> int:
        if k == TOTAL_ACNE and k not in c:
            return int(c.get("inflammatory", 0)) + int(c.get("comedone", 0))
        return int(c.get(k, 0))

    return {k: Change(get(base_counts, k), get(follow_counts, k)) for k in CHANGE_KEYS}


def region_change(
    base_by_region: Mapping[str, Mapping[str, int]], follow_by_region: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, Change]]:
    """``count_change`` for every region present in either visit."""
    regions = list(dict.fromkeys([*base_by_region, *follow_by_region]))
    return {r: count_change(base_by_region.get(r, {}), follow_by_region.get(r, {})) for r in regions}


def grade_change(base_grades: Mapping[str, Any], follow_grades: Mapping[str, Any]) -> dict[str, Any]:
    """Hayashi grade and GAGS score change (a CountResult's ``grades`` blocks); GAGS is None without regions."""
    out: dict[str, Any] = {}
    bh, fh = base_grades.get("hayashi"), follow_grades.get("hayashi")
    out["hayashi"] = (
        None
        if not bh or not fh
        else {"baseline": bh["grade"], "followup": fh["grade"], "change": fh["grade"] - bh["grade"]}
        | {"baseline_label": bh.get("label"), "followup_label": fh.get("label")}
        # The counts the grades come from (the worse half of a frontal photo), so a grade can be read
        # beside a total that moved the other way.
        | {"baseline_n": bh.get("n_lesions"), "followup_n": fh.get("n_lesions"), "basis": fh.get("basis")}
    )
    bg, fg = base_grades.get("gags"), follow_grades.get("gags")
    out["gags"] = (
        None
        if not bg or not fg
        else {"baseline": bg["score"], "followup": fg["score"], "change": fg["score"] - bg["score"]}
        | {"baseline_label": bg.get("label"), "followup_label": fg.get("label")}
    )
    return out


def responder_flags(changes: Mapping[str, Change], *, threshold_pct: float = RESPONDER_PCT) -> dict[str, bool | None]:
    """Per class: at least ``threshold_pct`` percent fewer lesions than at baseline (None: baseline 0).

    The usual trial responder is ``inflammatory``: at least 50% fewer inflammatory lesions.
    """
    out: dict[str, bool | None] = {}
    for k, ch in changes.items():
        p = ch.percent
        out[k] = None if p is None else p <= -threshold_pct
    return out


@dataclass(frozen=True)
class Durability:
    """How the count of one class moves over three or more visits.

    Attributes:
        cls: the class (``inflammatory`` or ``total_acne`` usually).
        counts: count at each visit, baseline first.
        days: days since baseline at each visit (None where the date is unknown).
        percent_change: percent change from baseline at each visit (None where the baseline is 0).
        nadir_index: visit with the fewest lesions after baseline.
        best_reduction_pct: percent reduction at the nadir (positive = fewer), None when baseline is 0.
        rebound: counts climbed back toward baseline after the nadir.
        rebound_index: first visit that met the rebound rule, or None.
        regained_fraction: share of the improvement lost at the last visit (0 none, 1 back to baseline).
        days_to_baseline: linear projection from the nadir to the last visit of when the count is back at
            baseline, in days since baseline; None when not rising or dates are missing.
        hint: a one-line hint for the clinician, or None. It suggests (re-)treatment only for a patient
            known to be 18 or older.
        visit_indices: which visits of the comparison the counts are from (baseline first); visits whose
            photos were not comparable with the baseline are left out.
        excluded: visits of the view left out as not comparable.
    """

    cls: str
    counts: tuple[int, ...]
    days: tuple[float | None, ...]
    percent_change: tuple[float | None, ...]
    nadir_index: int
    best_reduction_pct: float | None
    rebound: bool
    rebound_index: int | None
    regained_fraction: float | None
    days_to_baseline: float | None
    hint: str | None
    visit_indices: tuple[int, ...] = ()
    excluded: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.cls,
            "counts": list(self.counts),
            "days": list(self.days),
            "percent_change": [None if p is None else round(p, 2) for p in self.percent_change],
            "nadir_index": self.nadir_index,
            "best_reduction_pct": None if self.best_reduction_pct is None else round(self.best_reduction_pct, 2),
            "rebound": self.rebound,
            "rebound_index": self.rebound_index,
            "regained_fraction": None if self.regained_fraction is None else round(self.regained_fraction, 4),
            "days_to_baseline": None if self.days_to_baseline is None else round(self.days_to_baseline, 1),
            "hint": self.hint,
            "visit_indices": list(self.visit_indices),
            "excluded": list(self.excluded),
        }


def durability_curve(
    counts: Sequence[int],
    days: Sequence[float | None] | None = None,
    *,
    cls: str = "inflammatory",
    treatment: str | None = None,
    days_since_treatment: float | None = None,
    age_years: float | None = None,
    rebound_fraction: float = REBOUND_FRACTION,
    rebound_min_lesions: int = REBOUND_MIN_LESIONS,
) -> Durability:
    """Durability of the response over visits, rebound detection and a re-treatment hint.

    A rebound is a visit after the nadir whose count has climbed back by at least ``rebound_fraction`` of the
    improvement (baseline minus nadir) and by at least ``rebound_min_lesions`` lesions.

    Args:
        counts: count at each visit, baseline first; at least 3 visits.
        days: days since baseline per visit (None entries for unknown dates); None when all unknown.
        cls: the class the counts are of (for the report).
        treatment: free-text treatment (a botulinum toxin treatment adds its 4-6 month expectation).
        days_since_treatment: days from the last treatment to the last visit, when known.
        age_years: the patient's age; under 18, or unknown, the hint never suggests treatment.
        rebound_fraction: see above, in (0, 1].
        rebound_min_lesions: see above.

    Returns:
        The durability summary.
    """
    if len(counts) < 3:
        raise ValueError(f"a durability curve needs at least 3 visits (baseline and two follow-ups), got {len(counts)}")
    if days is not None and len(days) != len(counts):
        raise ValueError(f"days has {len(days)} entries for {len(counts)} visits")
    if any(c < 0 for c in counts):
        raise ValueError("a lesion count cannot be negative")
    counts_t = tuple(int(c) for c in counts)
    days_t: tuple[float | None, ...] = tuple(days) if days is not None else (None,) * len(counts)
    b = counts_t[0]
    pct = tuple(None if b == 0 else 100.0 * (c - b) / b for c in counts_t)
    nadir = 1 + min(range(len(counts_t) - 1), key=lambda k: (counts_t[k + 1], k))
    gain = b - counts_t[nadir]
    best = None if b == 0 else 100.0 * gain / b
    rebound_index = None
    if gain > 0:
        need = max(rebound_fraction * gain, rebound_min_lesions)
        rebound_index = next(
            (k for k in range(nadir + 1, len(counts_t)) if counts_t[k] - counts_t[nadir] >= need), None
        )
    regained = None if gain <= 0 else (counts_t[-1] - counts_t[nadir]) / gain
    to_base = None
    dn, dl = days_t[nadir], days_t[-1]
    if gain > 0 and dn is not None and dl is not None and dl > dn and counts_t[-1] > counts_t[nadir]:
        slope = (counts_t[-1] - counts_t[nadir]) / (dl - dn)
        to_base = dn + gain / slope
    advise = age_years is not None and age_years >= TOXIN_MIN_AGE_YEARS
    hint = _hint(
        cls, counts_t, nadir, rebound_index, regained, days_t, to_base, treatment, days_since_treatment, advise
    )
    return Durability(
        cls=cls,
        counts=counts_t,
        days=days_t,
        percent_change=pct,
        nadir_index=nadir,
        best_reduction_pct=best,
        rebound=rebound_index is not None,
        rebound_index=rebound_index,
        regained_fraction=regained,
        days_to_baseline=to_base,
        hint=hint,
    )


def _hint(
    cls: str,
    counts: tuple[int, ...],
    nadir: int,
    rebound_index: int | None,
    regained: float | None,
    days: tuple[float | None, ...],
    to_base: float | None,
    treatment: str | None,
    days_since_treatment: float | None,
    advise: bool,
) -> str | None:
    """The clinician's hint; ``advise`` (an adult patient) allows a treatment suggestion."""
    toxin = is_botulinum_toxin(treatment)
    label = cls.replace("_", " ")
    if rebound_index is not None:
        when = f" by day {days[rebound_index]:.0f}" if days[rebound_index] is not None else ""
        if (regained or 0) >= 1:
            msg = (
                f"{label} lesions are back at or above baseline ({counts[0]} at baseline, {counts[nadir]} at the "
                f"best visit, {counts[-1]} now{when.replace(' by', ', by')})"
            )
        else:
            msg = (
                f"{label} lesions are climbing back toward baseline ({counts[nadir]} at the best visit, "
                f"{counts[-1]} now; {100 * (regained or 0):.0f}% of the improvement lost{when})"
            )
        if not advise:
            msg += "; review the treatment plan (no treatment is suggested: the patient is under 18 or of unknown age)"
        elif toxin:
            msg += "; the botulinum toxin effect is wearing off: consider re-treatment"
        else:
            msg += "; consider re-treatment or a change of treatment"
        return msg
    if regained is not None and regained > 0 and counts[-1] > counts[-2]:
        tail = f"; at this rate back at baseline around day {to_base:.0f}" if to_base is not None else ""
        lost = f"{100 * regained:.0f}% of the improvement lost"
        return f"{label} lesions are rising again since the best visit ({lost}){tail}"
    if advise and toxin and days_since_treatment is not None and days_since_treatment >= TOXIN_EFFECT_DAYS[0]:
        return (
            f"{days_since_treatment:.0f} days since botulinum toxin: its effect usually fades after 4-6 months; "
            "watch for a rebound and plan a review"
        )
    return None


def contraindication_warnings(
    treatments: Sequence[tuple[str | None, float | None, dt.date | None]],
) -> list[str]:
    """The warning for botulinum toxin recorded for a patient under 18.

    Args:
        treatments: ``(treatment, age_years, date)`` per visit.

    Returns:
        One plain warning that names every offending visit (none when there is none).
    """
    offending = [
        (treatment, age, date)
        for treatment, age, date in treatments
        if is_botulinum_toxin(treatment) and age is not None and age < TOXIN_MIN_AGE_YEARS
    ]
    if not offending:
        return []
    ages = sorted({f"{age:g}" for _, age, _ in offending})
    dates = [d.isoformat() for _, _, d in offending if d is not None]
    when = f" on {', '.join(dates)}" if dates else ""
    names = sorted({str(t) for t, _, _ in offending})
    return [
        f"botulinum toxin ({'; '.join(names)}) is recorded{when} for a patient aged {' / '.join(ages)}: "
        f"it is contraindicated under {TOXIN_MIN_AGE_YEARS}"
    ]
