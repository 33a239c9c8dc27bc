from __future__ import annotations

import numpy as np
import pytest

from lesioncount import synth


def _skin() -> np.ndarray:
    return np.full((120, 140, 3), (200, 150, 130), np.uint8)


@pytest.mark.parametrize("kind", list(synth.KINDS))
def test_render_changes_only_inside_its_footprint(kind: str) -> None:
    img = _skin()
    before = img.copy()
    out, mask = synth.render(img, kind, 70, 60, 5.0, rng=1)
    np.testing.assert_array_equal(img, before)  # input untouched
    assert mask.dtype == bool and mask[60, 70] and 20 < mask.sum() < 400
    changed = np.abs(out.astype(int) - img.astype(int)).sum(2) > 0
    ys, xs = np.nonzero(changed)
    assert abs(xs.mean() - 70) < 3 and abs(ys.mean() - 60) < 3
    assert xs.max() - xs.min() < 5.0 * 6


def test_render_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown lesion kind"):
        synth.render(_skin(), "mole", 10, 10, 3)


def test_plant_respects_allowed_area_avoid_and_gap() -> None:
    allowed = np.zeros((120, 140), bool)
    allowed[20:100, 20:120] = True
    out, planted = synth.plant(
        _skin(), {"papule": 3, "boxcar": 2, "red_mark": 2}, 0, allowed=allowed, avoid=[(70, 60, 10)], min_gap=1.0
    )
    assert len(planted) == 7
    assert {p.cls for p in planted} == {"inflammatory", "scar", None}
    for p in planted:
        assert allowed[int(p.y), int(p.x)]
        assert np.hypot(p.x - 70, p.y - 60) > 10 + p.radius
    for i, a in enumerate(planted):
        for b in planted[i + 1 :]:
            assert np.hypot(a.x - b.x, a.y - b.y) > a.radius + b.radius


def test_plant_is_reproducible() -> None:
    a = synth.plant(_skin(), {"pustule": 3}, 42)
    b = synth.plant(_skin(), {"pustule": 3}, 42)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
