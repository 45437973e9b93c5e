import math

import numpy as np
import pytest
import torch

from msa_toolkit.training.metrics import (
    compute_metrics, infer_metric_set, is_better, mosi_metrics, pearson, sims_metrics, weighted_f1,
)


def test_weighted_f1_hand_computed():
    # true: 1,1,1,0 ; pred: 1,0,1,0
    # class 1: tp=2 fp=0 fn=1 -> f1 = 4/5 ; class 0: tp=1 fp=1 fn=0 -> f1 = 2/3
    # weighted = (3*0.8 + 1*2/3) / 4 = 0.7666...
    assert weighted_f1([1, 1, 1, 0], [1, 0, 1, 0]) == pytest.approx((3 * 0.8 + 2 / 3) / 4)
    # a class only predicted, never true, has weight 0; the never-predicted true class has F1 0
    assert weighted_f1([1, 1], [0, 0]) == 0.0
    assert weighted_f1([1, 1], [1, 1]) == 1.0


def test_mosi_metrics_hand_computed():
    true = np.array([-2.0, -0.4, 0.0, 0.6, 2.6, 1.4])
    pred = np.array([-1.2, 0.3, -0.2, 0.0, 3.4, 1.6])
    m = mosi_metrics(pred, true)
    # has-0: true>=0 = F,F,T,T,T,T ; pred>=0 = F,T,F,T,T,T -> 4/6 correct
    assert m["acc2_has0"] == pytest.approx(4 / 6)
    # class True: tp=3 fp=1 fn=1 -> 6/8 ; class False: tp=1 fp=1 fn=1 -> 2/4 ; weighted (4*.75+2*.5)/6
    assert m["f1_has0"] == pytest.approx((4 * 0.75 + 2 * 0.5) / 6)
    # non-0 drops the 0 label: true>0 = F,F,T,T,T ; pred>0 = F,T,F(0.0 is not >0),T,T -> 3/5
    assert m["acc2_non0"] == pytest.approx(3 / 5)
    # True: tp=2 fp=1 fn=1 -> 4/6 ; False: tp=1 fp=1 fn=1 -> 2/4 ; weighted (3*(2/3) + 2*.5)/5
    assert m["f1_non0"] == pytest.approx((3 * (2 / 3) + 2 * 0.5) / 5)
    # acc7: round(clip3) true -2,-0,0,1,3,1 ; pred -1,0,-0,0,3,2 -> equal at idx 1,2,4 -> 3/6
    assert m["acc7"] == pytest.approx(3 / 6)
    # acc5: clip2 true -2,-0.4,0,0.6,2,1.4 -> -2,0,0,1,2,1 ; pred -1.2,0.3,-0.2,0,2,1.6 -> -1,0,0,0,2,2 -> 3/6
    assert m["acc5"] == pytest.approx(3 / 6)
    assert m["mae"] == pytest.approx(np.mean([0.8, 0.7, 0.2, 0.6, 0.8, 0.2]))
    assert m["corr"] == pytest.approx(np.corrcoef(pred, true)[0, 1])


def test_round_half_to_even_like_reference():
    # numpy.round(0.5) == 0, round(1.5) == 2 (the reference uses numpy.round)
    m = mosi_metrics([0.5, 1.5], [0.0, 2.0])
    assert m["acc7"] == 1.0


def test_corr_nan_safe_for_constant_predictions():
    assert pearson([1.0, 1.0, 1.0], [0.0, 1.0, 2.0]) == 0.0
    assert pearson([1.0], [2.0]) == 0.0
    m = mosi_metrics(np.zeros(4), np.array([-1.0, 1.0, 2.0, -2.0]))
    assert m["corr"] == 0.0 and not math.isnan(m["corr"])
    assert m["acc2_has0"] == 0.5


def test_sims_metrics_hand_computed():
    true = np.array([-1.0, -0.6, 0.0, 0.1, 0.8, 0.2])
    pred = np.array([-1.4, -0.8, 0.05, 0.12, 0.6, -0.1])
    m = sims_metrics(pred, true)
    # acc2 bins [-1,0] / (0,1]: true 0,0,0,1,1,1 ; pred(clipped) 0,0,1,1,1,0 -> 4/6
    assert m["acc2"] == pytest.approx(4 / 6)
    # acc3 [-1,-.1] (-.1,.1] (.1,1]: true 0,0,1,1,2,2 ; pred 0,0,1,2,2,0 -> 4/6
    assert m["acc3"] == pytest.approx(4 / 6)
    # acc5 [-1,-.7] (-.7,-.1] (-.1,.1] (.1,.7] (.7,1]: true 0,1,2,2,4,3 ; pred 0,0,2,3,3,0 -> 2/6
    assert m["acc5"] == pytest.approx(2 / 6)
    # mae on clipped: |−1−(−1)|=0, .2, .05, .02, .2, .3
    assert m["mae"] == pytest.approx(np.mean([0.0, 0.2, 0.05, 0.02, 0.2, 0.3]))
    # f1 on acc2 classes: class0 tp=2 fp=1 fn=1 -> 4/6 ; class1 tp=2 fp=1 fn=1 -> 4/6
    assert m["f1"] == pytest.approx(4 / 6)


def test_compute_metrics_accepts_tensors_and_dispatches():
    m = compute_metrics(torch.tensor([0.5, -0.5]), torch.tensor([1.0, -1.0]))
    assert m["acc2_non0"] == 1.0
    assert set(compute_metrics([0.1], [0.2], "sims")) == {"acc2", "acc3", "acc5", "f1", "mae", "corr"}
    with pytest.raises(ValueError):
        compute_metrics([0.1], [0.2], "nope")


def test_infer_metric_set_and_is_better():
    assert infer_metric_set([-0.8, 0.2, 1.0]) == "sims"
    assert infer_metric_set([-3.0, 1.4, 2.0]) == "standard"
    assert is_better("mae", 0.5, 0.6) and not is_better("mae", 0.7, 0.6)
    assert is_better("acc7", 0.5, 0.4) and not is_better("corr", 0.3, 0.4)
    assert is_better("loss", 1.0, None) and not is_better("loss", float("nan"), None)


# -- issue 31: undefined metrics are NaN (null / n/a) with a reason, never 0.0 --------------------------------

def test_score_marks_undefined_metrics_nan_with_the_reason():
    from msa_toolkit.training.metrics import describe_undefined, format_metrics, score

    m = score(np.array([0.5, -1.0, 2.0]), np.zeros(3))
    assert math.isnan(m["acc2_non0"]) and math.isnan(m["f1_non0"]) and math.isnan(m["corr"])
    assert m["acc2_has0"] == pytest.approx(2 / 3)
    assert m.undefined == {"acc2_non0": "no non-zero labels", "f1_non0": "no non-zero labels",
                           "corr": "constant labels"}
    assert "acc2_non0=n/a" in format_metrics(m) and "corr=n/a" in format_metrics(m, percent=True)
    assert describe_undefined(m.undefined) == ("acc2_non0, f1_non0 n/a (no non-zero labels); "
                                               "corr n/a (constant labels)")
    c = score(np.ones(4), np.array([-1.0, 1.0, 2.0, -2.0]))
    assert c.undefined == {"corr": "constant predictions"} and c["acc2_non0"] == 0.5
    s = score(np.array([2.0, 3.0]), np.array([0.5, -0.5]), "sims")  # constant once clipped to [-1, 1]
    assert s.undefined == {"corr": "constant predictions"} and math.isnan(s["corr"])
    assert set(score([], []).undefined) == set(mosi_metrics([1.0], [1.0]))
    assert score([0.5, -0.5], [1.0, -1.0]).undefined == {}


def test_undefined_metrics_never_win_selection_and_are_left_out_of_seed_means():
    from msa_toolkit.training.metrics import seed_stats
    from msa_toolkit.training.report import _cell
    from msa_toolkit.training.selection import best_test_figures, improved

    assert not improved(float("nan"), None, "max") and not improved(float("nan"), 0.1, "max")
    hist = [{"epoch": 1, "test": {"corr": float("nan"), "mae": 1.0}},
            {"epoch": 2, "test": {"corr": 0.2, "mae": 1.1}}, {"epoch": 3, "test": {"corr": float("nan"), "mae": 0.9}}]
    figs = best_test_figures(hist, "corr")
    assert figs["test_at_best_test_epoch"]["epoch"] == 2 and figs["test_best_per_metric"]["metrics"]["corr"] == 0.2
    st = seed_stats([float("nan"), None])
    assert st["n"] == 0 and math.isnan(st["mean"]) and _cell(st, 2) == "n/a (n=0)"
    assert _cell(seed_stats([0.5, float("nan")]), 2) == "0.5000 (n=1)"


def test_benchmark_table_says_n_a_for_a_metric_no_seed_could_score():
    from msa_toolkit.training.benchmark import _fmt
    from msa_toolkit.training.metrics import seed_stats

    assert _fmt("corr", seed_stats([float("nan"), float("nan")]), False) == "n/a"
    assert _fmt("corr", {}, False) == ""


def test_seed_summary_takes_undefined_metrics_as_nan_or_null():
    from msa_toolkit.training.api import summarize
    from msa_toolkit.training.state import FitResult

    runs = [FitResult(None, 1, {"corr": float("nan")}, {"corr": None, "mae": 1.0}),
            FitResult(None, 1, {"corr": 0.5}, {"corr": 0.25, "mae": 0.5})]
    s = summarize(runs)
    assert s["test"]["corr"]["n"] == 1 and s["test"]["corr"]["mean"] == 0.25 and s["test"]["corr"]["std"] is None
    assert s["valid"]["corr"]["n"] == 1 and s["test"]["mae"]["n"] == 2
