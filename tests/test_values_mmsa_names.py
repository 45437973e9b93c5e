"""MMSA's metric names carry MMSA's values: each renamed key holds the quantity MMSA's ``MetricsTop``
computes under that name (Has0 vs Non0, F1 vs Acc), not merely a key that exists.

The reference side below is written from MMSA's definitions with sklearn's scorers (``accuracy_score``,
``f1_score(average='weighted')``), independent of msa_toolkit.training.metrics; the inputs are chosen so
that every metric has a different value, so a swapped name cannot pass.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from msa_toolkit.training.metrics import compute_metrics, mmsa_names

T = np.array([-2.0, 1.0, 0.0, 0.0, 3.0, 0.5, -2.5, -3.0])
P = np.array([-1.25, -1.25, 2.25, 3.25, 0.25, -2.25, 1.75, -2.25])

TS = np.array([0.0, -0.3, -0.9, 0.3, 0.0, 0.1, -0.5, -0.4])
PS = np.array([0.15, -0.05, 0.35, -0.25, 0.35, -0.55, -0.25, -0.85])


def _mmsa_standard(p, t):
    nz = t != 0
    mult = {f"Mult_acc_{k}": accuracy_score(np.round(np.clip(t, -b, b)), np.round(np.clip(p, -b, b)))
            for k, b in ((3, 1.0), (5, 2.0), (7, 3.0))}
    return {"Has0_acc_2": accuracy_score(t >= 0, p >= 0), "Has0_F1_score": f1_score(t >= 0, p >= 0, average="weighted"),
            "Non0_acc_2": accuracy_score(t[nz] > 0, p[nz] > 0),
            "Non0_F1_score": f1_score(t[nz] > 0, p[nz] > 0, average="weighted"),
            **mult, "MAE": np.mean(np.abs(p - t)), "Corr": np.corrcoef(p, t)[0, 1]}


def _mmsa_sims(p, t):
    p, t = np.clip(p, -1, 1), np.clip(t, -1, 1)

    def bins(x, edges):
        out = np.zeros_like(x)
        for i in range(len(edges) - 1):
            out[(x > edges[i]) & (x <= edges[i + 1])] = i
        return out
    e2, e3, e5 = [-1.01, 0.0, 1.01], [-1.01, -0.1, 0.1, 1.01], [-1.01, -0.7, -0.1, 0.1, 0.7, 1.01]
    return {"Mult_acc_2": accuracy_score(bins(t, e2), bins(p, e2)), "Mult_acc_3": accuracy_score(bins(t, e3), bins(p, e3)),
            "Mult_acc_5": accuracy_score(bins(t, e5), bins(p, e5)),
            "F1_score": f1_score(bins(t, e2), bins(p, e2), average="weighted"),
            "MAE": np.mean(np.abs(p - t)), "Corr": np.corrcoef(p, t)[0, 1]}


def test_inputs_separate_every_metric():
    for vals in (compute_metrics(P, T, "standard").values(), compute_metrics(PS, TS, "sims").values()):
        vals = [round(v, 9) for v in vals]
        assert len(set(vals)) == len(vals)


def test_standard_names_hold_mmsa_values():
    got, ref = mmsa_names(compute_metrics(P, T, "standard")), _mmsa_standard(P, T)
    assert set(got) == set(ref)
    for k in ref:
        assert got[k] == pytest.approx(ref[k], abs=1e-12), k
    # by hand: Has0 over all 8 samples, t >= 0 vs p >= 0: right at 0, 2, 3, 4, 7 -> 5/8;
    # Non0 over the 6 non-zero labels (0, 1, 4, 5, 6, 7), t > 0 vs p > 0: right at 0, 4, 7 -> 3/6
    assert got["Has0_acc_2"] == 5 / 8 and got["Non0_acc_2"] == 3 / 6


def test_sims_names_hold_mmsa_values():
    got, ref = mmsa_names(compute_metrics(PS, TS, "sims")), _mmsa_sims(PS, TS)
    assert set(got) == set(ref)
    for k in ref:
        assert got[k] == pytest.approx(ref[k], abs=1e-12), k
