"""DLF specifics: loss composition and weights, use of every modality.

Padding invariance is checked for every model in test_registry.py.
"""

from __future__ import annotations

import torch

from msa_toolkit.data.batch import synthetic_batch
from msa_toolkit.models import create_model, get_entry
from msa_toolkit.models.dlf import DLFConfig

DIMS = dict(text_dim=16, audio_dim=5, vision_dim=7, text_len=6, audio_len=9, vision_len=7)


def tiny():
    torch.manual_seed(0)
    return create_model("dlf", preset="tiny", **DIMS).eval()


def test_defaults_are_the_mosi_reference():
    c = DLFConfig()
    assert (c.dim, c.heads, c.layers, c.kernel_text, c.batch_size, c.lr, c.grad_clip_value) == \
        (50, 10, 2, 5, 16, 1e-4, 0.6)
    assert (c.w_final, c.w_shared, c.w_text, c.w_vision, c.w_audio) == (1, 1, 3, 1, 1)
    assert (c.w_specific, c.w_reconstruction) == (0.1, 0.1)
    assert abs(c.w_triplet - 0.01) < 1e-12 and abs(c.w_orthogonality - 0.01) < 1e-12
    assert {"mosi", "mosei"} <= set(get_entry("dlf").presets)


def test_loss_components_follow_the_published_formula():
    model = tiny()
    b = synthetic_batch(5, (6, 9, 7), (16, 5, 7))
    out = model(b)
    loss = model.objective(out, b)
    assert set(loss.components) == {"final_l1", "shared_l1", "text_l1", "vision_l1", "audio_l1", "specific",
                                    "reconstruction", "triplet", "orthogonality"}
    l1 = lambda p: (p - b.label).abs().mean()
    assert torch.allclose(loss.components["final_l1"], l1(out.prediction))
    assert torch.allclose(loss.components["text_l1"], 3 * l1(out.aux["pred_text"]))
    assert torch.allclose(loss.components["shared_l1"], l1(out.aux["pred_shared"]))
    for k in ("triplet", "orthogonality", "specific", "reconstruction"):
        assert loss.components[k] >= 0


def test_audio_and_vision_reach_the_prediction():
    model = tiny()
    b = synthetic_batch(3, (6, 9, 7), (16, 5, 7), seed=5)
    ref = model(b).prediction
    for m in ("audio", "vision"):
        b2 = synthetic_batch(3, (6, 9, 7), (16, 5, 7), seed=5)
        setattr(b2, m, getattr(b2, m) + 1.0 * b2.features(m)[1].unsqueeze(-1))
        assert not torch.allclose(model(b2).prediction, ref)


def test_predict_skips_the_objective_only_reencoding_and_gives_the_forward_prediction():
    """``predict`` (what ``msa predict`` runs) does not re-encode the reconstructions or build the triplet
    embeddings, which only the objective reads; its prediction equals the forward's."""
    model = tiny()
    b = synthetic_batch(4, (6, 9, 7), (16, 5, 7), seed=2)
    calls = []
    for m, enc in model.specific_encoders.items():
        enc.register_forward_hook(lambda mod, args, out, m=m: calls.append(m))
    for dec in model.decoders.values():
        dec.register_forward_hook(lambda mod, args, out: calls.append("decoder"))
    with torch.no_grad():
        want = model(b).prediction
        assert calls.count("decoder") == 3 and len(calls) == 9  # 3 specific + 3 re-encodings + 3 decoders
        calls.clear()
        got = model.predict(b)
    assert sorted(calls) == ["audio", "text", "vision"]
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


