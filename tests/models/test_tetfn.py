"""TETFN (issue 37): the generated unimodal labels and the weighted unimodal terms on hand-made features."""

from __future__ import annotations

import math

import torch

from msa_toolkit.data.batch import synthetic_batch
from msa_toolkit.models import create_model
from msa_toolkit.models.base import ModelOutput
from msa_toolkit.models.tetfn import TASKS, UnimodalLabels


def feats(**rows):
    return {t: torch.tensor(rows.get(t, rows["fusion"]), dtype=torch.float32) for t in TASKS}


def test_label_generation_on_hand_made_features():
    mem = UnimodalLabels(bound=3.0, exclude_zero=True)
    rows = mem.rows(["p", "n"], torch.tensor([2.0, -1.0]))
    assert mem.labels.tolist() == [[2.0] * 4, [-1.0] * 4]
    # epoch 1: features stored, centres = the positive / negative sample's features, labels unchanged
    mem.update(rows, feats(fusion=[[1.0, 0.0], [0.0, 1.0]]))
    assert mem.labels.tolist() == [[2.0] * 4, [-1.0] * 4]
    torch.testing.assert_close(mem.centres["text"][0], torch.tensor([1.0, 0.0]))
    # epoch 2 for "p": fusion features at its positive centre, text features halfway between the centres
    rows = mem.rows(["p"], torch.tensor([2.0]))
    mem.update(rows, feats(fusion=[[1.0, 0.0]], text=[[0.5, 0.5]]))
    d_f = (math.sqrt(2) - 0.0) / (0.0 + 1e-8)                 # (d_n - d_p) / (d_p + eps) of the fusion features
    d_s = 0.0                                                  # text: equally far from both centres
    new = min(3.0, max(-3.0, 0.5 * d_s / (d_f + 1e-8) * 2.0 + 0.5 * (2.0 + d_s - d_f)))
    assert new == -3.0                                         # clamped
    n = 2
    want = (n - 1) / (n + 1) * 2.0 + 2 / (n + 1) * new
    assert math.isclose(float(mem.labels[0, 1]), want, rel_tol=1e-6)
    assert float(mem.labels[0, 0]) == 2.0                      # the multimodal label never moves


def test_unimodal_terms_are_weighted_by_the_label_gap():
    model = create_model("tetfn", "tiny", text_dim=16, audio_dim=5, vision_dim=7)
    obj = model.objective.train()
    b = synthetic_batch(2, (6, 9, 7), (16, 5, 7), seed=0)
    out = ModelOutput(torch.zeros(2), {**{f"pred_{t}": torch.zeros(2) for t in TASKS[1:]},
                                       **{f"feature_{t}": torch.zeros(2, 3) for t in TASKS}})
    first = obj(out, b)
    assert float(first.components["text"].detach()) == 0.0              # first epoch: y_m = y_f, weight tanh(0) = 0
    obj.memory.labels[:, 1] = b.label + 1.0                    # text labels one above the multimodal ones
    loss = obj(out, b)
    want = (math.tanh(1.0) * (b.label + 1.0).abs()).mean()
    torch.testing.assert_close(loss.components["text"], want)
    torch.testing.assert_close(loss.components["fusion"], b.label.abs().mean())
    obj.eval()
    before = obj.memory.labels.clone()
    obj(out, b)
    assert torch.equal(obj.memory.labels, before)              # eval mode updates nothing
