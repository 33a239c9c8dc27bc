from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from lesioncount.bootstrap import bootstrap_ci
from lesioncount.evaluate.metrics import (
    average_precision,
    bland_altman,
    confusion_matrix,
    count_agreement,
    detection_scores,
    grade_agreement,
    icc,
    pearson_r,
    precision_recall_curve,
    quadratic_weighted_kappa,
    spearman_r,
)

# Shrout and Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)


def test_detection_scores_golden() -> None:
    m = detection_scores(3, 1, 2)
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.6)
    assert m["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)


def test_detection_scores_undefined_cases() -> None:
    assert all(math.isnan(v) for v in detection_scores(0, 0, 0).values())
    only_fp = detection_scores(0, 2, 0)
    assert only_fp["precision"] == 0 and math.isnan(only_fp["recall"]) and only_fp["f1"] == 0
    only_fn = detection_scores(0, 0, 3)  # a model that finds nothing: F1 0, not undefined
    assert math.isnan(only_fn["precision"]) and only_fn["recall"] == 0 and only_fn["f1"] == 0
    assert detection_scores(0, 2, 3)["f1"] == 0.0


def test_average_precision_golden() -> None:
    # PR points: (1/3, 1), (1/3, 1/2), (2/3, 2/3), (2/3, 1/2) -> envelope area 1/3 * 1 + 1/3 * 2/3.
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0], 3) == pytest.approx(5 / 9)
    assert average_precision([0.9, 0.5], [1, 1], 2) == pytest.approx(1.0)
    assert average_precision([0.9, 0.5], [0, 0], 2) == 0.0
    assert average_precision([], [], 4) == 0.0
    assert math.isnan(average_precision([0.9], [0], 0))
    # The score order, not the input order, matters.
    assert average_precision([0.6, 0.7, 0.8, 0.9], [0, 1, 0, 1], 3) == pytest.approx(5 / 9)


def test_tied_scores_are_one_operating_point() -> None:
    # Two predictions with the same score cannot be split by a threshold: one point at P = 1/2.
    recall, precision, thr = precision_recall_curve([0.5, 0.5], [1, 0], 1)
    assert recall.tolist() == [1.0] and precision.tolist() == [0.5] and thr.tolist() == [0.5]
    assert average_precision([0.5, 0.5], [0, 1], 1) == pytest.approx(0.5)


def test_weighted_ap_equals_repeating_the_predictions() -> None:
    rng = np.random.default_rng(1)
    s, t = rng.uniform(size=30), rng.uniform(size=30) < 0.5
    w = rng.integers(0, 3, 30)
    rep_s, rep_t = np.repeat(s, w), np.repeat(t, w)
    assert average_precision(s, t, 40, weights=w) == pytest.approx(average_precision(rep_s, rep_t, 40))


def test_pr_curve_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        precision_recall_curve([0.1, 0.2], [True], 2)


def test_correlations_match_scipy_and_numpy() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 60, 40).astype(float)
    y = x + rng.normal(0, 8, 40)
    assert pearson_r(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert spearman_r(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    assert spearman_r(x, y) == pytest.approx(np.corrcoef(rx, ry)[0, 1])


def test_correlations_of_constants_are_nan_without_warnings() -> None:
    assert math.isnan(pearson_r([3, 3, 3], [1, 2, 3]))
    assert math.isnan(spearman_r([1, 2, 3], [0, 0, 0]))
    assert math.isnan(pearson_r([1], [2]))
    assert math.isnan(pearson_r([], []))


def test_icc_reproduces_shrout_and_fleiss() -> None:
    assert icc(SHROUT_FLEISS, "2,1") == pytest.approx(0.29, abs=0.005)
    assert icc(SHROUT_FLEISS, "3,1") == pytest.approx(0.71, abs=0.005)


def test_icc_agreement_vs_consistency() -> None:
    ref = np.array([0, 5, 12, 20, 33, 41], float)
    assert icc(np.column_stack([ref, ref]), "2,1") == pytest.approx(1.0)
    shifted = np.column_stack([ref, ref + 10])
    assert icc(shifted, "3,1") == pytest.approx(1.0)  # consistency ignores a constant offset
    assert icc(shifted, "2,1") < 0.9  # absolute agreement does not
    # Two raters: ICC(3,1) equals the two-way formula written out by hand.
    a, b = ref, ref * 0.5 + np.array([1, -2, 0, 3, -1, 2])
    n = len(a)
    s = (a + b) / 2
    msr = 2 * np.var(s, ddof=0) * n / (n - 1)
    mse = np.sum(((a - b) - (a - b).mean()) ** 2) / 2 / (n - 1)
    assert icc(np.column_stack([a, b]), "3,1") == pytest.approx((msr - mse) / (msr + mse))


def test_icc_errors_and_degenerate_input() -> None:
    with pytest.raises(ValueError, match="n_subjects, k_raters"):
        icc(np.zeros(5))
    with pytest.raises(ValueError, match="unknown ICC kind"):
        icc(SHROUT_FLEISS, "1,1")  # type: ignore[arg-type]
    assert math.isnan(icc([[1, 2]]))
    assert math.isnan(icc(np.zeros((4, 2))))


def test_bland_altman_golden() -> None:
    ba = bland_altman([1, 2, 3], [0, 0, 0])
    assert ba["bias"] == pytest.approx(2.0)
    assert ba["sd"] == pytest.approx(1.0)
    assert ba["loa_low"] == pytest.approx(0.04)
    assert ba["loa_high"] == pytest.approx(3.96)
    assert math.isnan(bland_altman([1], [0])["sd"])
    assert math.isnan(bland_altman([], [])["bias"])


def test_count_agreement_golden() -> None:
    m = count_agreement([2, 4, 9, 0], [1, 4, 6, 2])  # errors +1, 0, +3, -2
    assert m["n"] == 4
    assert m["mae"] == pytest.approx(1.5)
    assert m["rmse"] == pytest.approx(math.sqrt(14 / 4))
    assert m["bias"] == pytest.approx(0.5)
    assert m["pearson_r"] == pytest.approx(stats.pearsonr([2, 4, 9, 0], [1, 4, 6, 2]).statistic)
    assert m["spearman_r"] == pytest.approx(stats.spearmanr([2, 4, 9, 0], [1, 4, 6, 2]).statistic)


def test_count_agreement_on_empty_and_zero_counts() -> None:
    m = count_agreement([], [])
    assert m["n"] == 0 and math.isnan(m["mae"]) and math.isnan(m["pearson_r"])
    z = count_agreement([0, 0, 0], [0, 0, 0])
    assert z["mae"] == 0 and z["bias"] == 0 and math.isnan(z["pearson_r"]) and math.isnan(z["icc_2_1"])
    with pytest.raises(ValueError, match="differ in shape"):
        count_agreement([1, 2], [1])


def test_confusion_matrix_and_grade_agreement() -> None:
    ref, pred = [0, 1, 2, 3, 3, 1], [0, 1, 1, 3, 2, 1]
    cm = confusion_matrix(ref, pred, 4)
    assert cm.tolist() == [[1, 0, 0, 0], [0, 2, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1]]
    g = grade_agreement(ref, pred)
    assert g["accuracy"] == pytest.approx(4 / 6)
    assert g["within_one"] == 1.0
    assert g["recall_per_grade"][1] == 1.0 and g["recall_per_grade"][2] == 0.0
    assert g["support_per_grade"] == [1, 2, 1, 2]
    with pytest.raises(ValueError, match=r"0\.\.3"):
        confusion_matrix([0, 4], [0, 1], 4)


def test_quadratic_kappa_equals_lins_concordance() -> None:
    # With quadratic weights, kappa is Lin's concordance correlation (population moments): an independent check.
    rng = np.random.default_rng(3)
    for _ in range(5):
        ref = rng.integers(0, 4, 50)
        pred = np.clip(ref + rng.integers(-1, 2, 50), 0, 3)
        ccc = 2 * np.cov(ref, pred, ddof=0)[0, 1] / (ref.var() + pred.var() + (ref.mean() - pred.mean()) ** 2)
        assert quadratic_weighted_kappa(confusion_matrix(ref, pred, 4)) == pytest.approx(ccc)


def test_quadratic_kappa_edges() -> None:
    assert quadratic_weighted_kappa(confusion_matrix([0, 1, 2, 3], [0, 1, 2, 3], 4)) == pytest.approx(1.0)
    assert math.isnan(quadratic_weighted_kappa(np.zeros((4, 4))))
    assert math.isnan(quadratic_weighted_kappa(confusion_matrix([1, 1], [1, 1], 4)))  # all in one cell


def test_bootstrap_ci_is_reproducible_and_brackets_the_estimate() -> None:
    x = np.random.default_rng(5).normal(10, 2, 80)

    def stat(idx: np.ndarray) -> dict[str, float]:
        return {"mean": float(x[idx].mean()), "undefined": float("nan")}

    a = bootstrap_ci(len(x), stat, n_boot=300, rng=7)
    b = bootstrap_ci(len(x), stat, n_boot=300, rng=7)
    assert a["mean"] == b["mean"]
    lo, hi = a["mean"]
    assert lo < x.mean() < hi
    # About 2 standard errors on each side.
    assert hi - lo == pytest.approx(2 * 1.96 * x.std(ddof=1) / math.sqrt(len(x)), rel=0.25)
    assert all(math.isnan(v) for v in a["undefined"])
    assert bootstrap_ci(0, stat) == {}


def test_bootstrap_by_group_draws_copies_together() -> None:
    # 40 faces, each photographed three times with almost the same value (a Roboflow export's copies).
    rng = np.random.default_rng(3)
    faces = rng.normal(10, 2, 40)
    x = np.repeat(faces, 3) + rng.normal(0, 0.01, 120)
    groups = np.repeat(np.arange(40), 3).tolist()

    def stat(idx: np.ndarray) -> dict[str, float]:
        return {"mean": float(x[idx].mean()), "n": float(len(idx))}

    by_photo = bootstrap_ci(len(x), stat, n_boot=400, rng=1)["mean"]
    by_face = bootstrap_ci(len(x), stat, n_boot=400, rng=1, groups=groups)
    # The copies carry no new evidence: the interval is that of 40 photos, sqrt(3) times the naive one.
    width = by_face["mean"][1] - by_face["mean"][0]
    assert width == pytest.approx(2 * 1.96 * faces.std(ddof=1) / math.sqrt(40), rel=0.25)
    assert (by_face["mean"][1] - by_face["mean"][0]) > 1.4 * (by_photo[1] - by_photo[0])
    assert by_face["n"] == (120.0, 120.0)  # each draw brings every copy of a drawn face
    with pytest.raises(ValueError, match="3 keys for 120 items"):
        bootstrap_ci(len(x), stat, groups=[0, 1, 2])
