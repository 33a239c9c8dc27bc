"""The overlay: rings for counted lesions, dots and a legend line for expert-style marks."""

from __future__ import annotations

import numpy as np

from lesioncount.report.overlay import EXPERT_COLOUR, draw_overlay
from lesioncount.types import Lesion


def _lesion(cls: str, x: float, y: float) -> Lesion:
    return Lesion(cls=cls, x=x, y=y, area_px=100.0, bbox=(x - 6, y - 6, 12.0, 12.0), score=0.5)


def test_expert_marks_are_dots_with_a_legend_line_of_their_own() -> None:
    image = np.full((1600, 1600, 3), 200, np.uint8)
    ring = [_lesion("inflammatory", 800, 800)]
    experts = [_lesion("acne", 400 + 100 * k, 1200) for k in range(3)]
    plain = draw_overlay(image, ring)
    marked = draw_overlay(image, ring, expert_marks=experts)
    assert (image == 200).all()  # the input is not drawn on
    for m in experts:
        assert tuple(marked[int(m.y), int(m.x)]) == EXPERT_COLOUR
        assert tuple(plain[int(m.y), int(m.x)]) == (200, 200, 200)
    # The counted lesion's ring is drawn alike either way.
    ring_px = (800 + round(0.6 * 12), 800)
    assert tuple(marked[ring_px[1], ring_px[0]]) == tuple(plain[ring_px[1], ring_px[0]]) != (200, 200, 200)
    # The legend grows by one darkened line for the expert-style marks, and only with them.
    darkened = (marked[:, 20, 0] < 100).sum()
    assert darkened > (plain[:, 20, 0] < 100).sum()
