"""Every registered model, forward and backward, on tiny batches.

Conventions the models follow so this test covers them automatically:

- a ``"tiny"`` preset (small widths/depths) is used when the model registers one;
  the test then overrides only the input dims and maximum lengths (:data:`DIMS`);
- a model whose parameters are legitimately unused in a training step lists their
  name prefixes in a class attribute ``grad_exempt`` (documented in its docstring);
  every other trainable parameter must receive a non-zero gradient.

Each check is a ``check_*`` function so the discovery test below can run them on a
throwaway model module, the way a newly added model file is checked.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest
import torch

import msa_toolkit.models as models_package
from msa_toolkit.data.batch import UNIMODAL_TASKS, Batch, synthetic_batch
from msa_toolkit.models import _registry, create_model, get_entry, list_models

LENGTHS = (6, 9, 7)
FEAT_DIMS = (16, 5, 7)
DIMS = dict(text_dim=FEAT_DIMS[0], audio_dim=FEAT_DIMS[1], vision_dim=FEAT_DIMS[2],
            text_len=LENGTHS[0], audio_len=LENGTHS[1], vision_len=LENGTHS[2])
MODELS = list_models()


def tiny(name: str, **extra):
    preset = "tiny" if "tiny" in get_entry(name).presets else None
    return create_model(name, preset=preset, **{**DIMS, **extra})


def absent_av_batch(batch_size: int = 4, seed: int = 1) -> Batch:
    b = synthetic_batch(batch_size, LENGTHS, FEAT_DIMS, seed=seed)
    B = batch_size
    return Batch(text=b.text, text_mask=b.text_mask, label=b.label,
                 audio=torch.zeros(B, 1, FEAT_DIMS[1]), audio_mask=torch.zeros(B, 1, dtype=torch.bool),
                 vision=torch.zeros(B, 1, FEAT_DIMS[2]), vision_mask=torch.zeros(B, 1, dtype=torch.bool), ids=b.ids,
                 **unimodal_labels(b))


def unimodal_labels(b: Batch) -> dict:
    """The unimodal labels of ``b`` as Batch keyword arguments (multi-task models train on them)."""
    return {f"label_{t}": b.unimodal_label(t) for t in UNIMODAL_TASKS}


def run_step(model, batch):
    out = model(batch)
    loss = model.objective(out, batch)
    return out, loss


def check_loss(loss, batch_size: int | None = None):
    assert loss.components, "an objective must report named components"
    for k, v in loss.components.items():
        assert v.dim() == 0, f"component {k} is not a scalar"
        assert torch.isfinite(v), f"component {k} = {v}"
    assert torch.isfinite(loss.total)
    total = sum(loss.components.values())
    assert torch.allclose(loss.total, total, rtol=1e-5, atol=1e-6), (float(loss.total), float(total))


def test_registry_lists_required_models():
    for name in ("text_only", "late_fusion", "tfn", "mult", "dlf", "almt"):
        assert name in MODELS
    for name in ("lmf", "mfn", "ef_lstm", "lf_dnn", "mctn", "mfm", "cenet", "tetfn",
                 "graph_mfn"):  # the MMSA zoo (issues 34, 37)
        assert name in MODELS


def pad_with_garbage(b: Batch) -> Batch:
    """Overwrite every padded step with large values that must not reach the prediction."""
    g = torch.Generator().manual_seed(7)
    for m in ("text", "audio", "vision"):
        v, mask = b.features(m)
        garbage = 9.0 + 10.0 * torch.randn(v.shape, generator=g, dtype=v.dtype)
        setattr(b, m, torch.where(mask.unsqueeze(-1), v, garbage))
    return b


EDGE_CASES = ["absent_audio_vision", "absent_text", "absent_audio", "absent_vision", "absent_all", "length_1",
              "batch_1"]


def edge_batch(case: str) -> Batch:
    if case == "absent_audio_vision":
        return absent_av_batch()
    if case == "absent_text":
        b = synthetic_batch(4, LENGTHS, FEAT_DIMS, seed=1)
        return Batch(text=torch.zeros(4, 1, FEAT_DIMS[0]), text_mask=torch.zeros(4, 1, dtype=torch.bool),
                     audio=b.audio, audio_mask=b.audio_mask, vision=b.vision, vision_mask=b.vision_mask,
                     label=b.label, ids=b.ids, **unimodal_labels(b))
    if case.startswith("absent_"):
        drop = ("text", "audio", "vision") if case == "absent_all" else (case.removeprefix("absent_"),)
        return synthetic_batch(5, LENGTHS, FEAT_DIMS, seed=0).drop(*drop)
    if case == "length_1":
        return synthetic_batch(3, (1, 1, 1), FEAT_DIMS, seed=2)
    return synthetic_batch(1, LENGTHS, FEAT_DIMS, seed=2)


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_gradients(name):
    check_forward_backward(name)


def check_forward_backward(name):
    torch.manual_seed(0)
    model = tiny(name)
    model.train()
    # odd batch size: with an L1 loss an even batch can give an exactly zero output-bias gradient
    batch = synthetic_batch(5, LENGTHS, FEAT_DIMS, seed=0)
    out, loss = run_step(model, batch)
    assert out.prediction.shape == (5,)
    assert torch.isfinite(out.prediction).all()
    for k, v in out.aux.items():
        assert isinstance(v, torch.Tensor), k
    check_loss(loss)
    loss.total.backward()
    exempt = tuple(getattr(model, "grad_exempt", ()))
    dead = [n for n, p in model.named_parameters()
            if p.requires_grad and not n.startswith(exempt) and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not dead, f"{name}: parameters without gradient: {dead}"
    for n, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), n
    model.objective.after_step(model)  # must run without error


@pytest.mark.parametrize("name", MODELS)
def test_deterministic_under_seed(name):
    check_deterministic(name)


def check_deterministic(name):
    batch = synthetic_batch(4, LENGTHS, FEAT_DIMS, seed=3)
    results = []
    for _ in range(2):
        torch.manual_seed(123)
        model = tiny(name)
        model.train()
        out, loss = run_step(model, batch)
        loss.total.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((out.prediction.detach(), loss.total.detach(), grads))
    (p1, l1, g1), (p2, l2, g2) = results
    assert torch.equal(p1, p2)
    assert torch.equal(l1, l2)
    assert len(g1) == len(g2) and all(torch.equal(a, b) for a, b in zip(g1, g2))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("case", EDGE_CASES)
def test_edge_inputs(name, case):
    check_edge_inputs(name, case)


def check_edge_inputs(name, case):
    torch.manual_seed(0)
    model = tiny(name)
    batch = edge_batch(case)
    for mode in ("train", "eval"):
        model.train(mode == "train")
        model.zero_grad(set_to_none=True)
        out, loss = run_step(model, batch)
        assert out.prediction.shape == (batch.size,)
        assert torch.isfinite(out.prediction).all(), (case, mode)
        check_loss(loss)
        if mode == "train":
            loss.total.backward()
            for n, p in model.named_parameters():
                if p.grad is not None:
                    assert torch.isfinite(p.grad).all(), (case, n)
            model.objective.after_step(model)


@pytest.mark.parametrize("name", MODELS)
def test_padding_does_not_change_predictions(name):
    check_padding_invariance(name)


def check_padding_invariance(name):
    """Padded steps carry no information: garbage there leaves the eval prediction unchanged."""
    torch.manual_seed(0)
    model = tiny(name).eval()
    b = synthetic_batch(3, LENGTHS, FEAT_DIMS, seed=3)
    ref = model(b).prediction
    assert torch.allclose(model(pad_with_garbage(b)).prediction, ref, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_predict_equals_the_forward_prediction(name):
    check_predict(name)


def check_predict(name):
    """``model.predict`` (what ``msa predict`` runs, possibly skipping objective-only work) gives the eval
    forward's prediction, for ordinary, padded and edge batches."""
    torch.manual_seed(0)
    model = tiny(name).eval()
    batches = [synthetic_batch(3, LENGTHS, FEAT_DIMS, seed=3)] + [edge_batch(c) for c in EDGE_CASES]
    with torch.no_grad():
        for b in batches:
            want = model(b).prediction
            got = model.predict(b)
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_config_roundtrip(name):
    check_config_roundtrip(name)


def check_config_roundtrip(name):
    model = tiny(name)
    d = model.config.to_dict()
    json.dumps(d)  # JSON-serialisable
    again = create_model(name, **d)
    assert again.config == model.config
    sd1, sd2 = model.state_dict(), again.state_dict()
    assert sd1.keys() == sd2.keys()
    assert all(sd1[k].shape == sd2[k].shape for k in sd1)
    assert model.num_parameters() > 0


@pytest.mark.parametrize("name,preset", [(n, p) for n in MODELS for p in get_entry(n).presets if p != "tiny"])
def test_published_presets_build(name, preset):
    model = create_model(name, preset=preset)
    assert model.num_parameters() > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.gpu
@pytest.mark.parametrize("name", MODELS)
def test_cuda_mixed_precision_step(name):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.manual_seed(0)
    model = tiny(name).cuda().train()
    batches = (synthetic_batch(5, LENGTHS, FEAT_DIMS, seed=0), absent_av_batch(),
               synthetic_batch(2, (1, 1, 1), FEAT_DIMS))
    for batch in batches:
        batch = batch.to("cuda")
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out, loss = run_step(model, batch)
        assert out.prediction.shape == (batch.size,)
        assert torch.isfinite(loss.total)
        loss.total.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        model.objective.after_step(model)


# --------------------------------------------------------------------------- discovery

#: a complete model module, as a user would add one: one file, one decorator
THROWAWAY_MODEL = textwrap.dedent('''
    """A throwaway model written by the registry test."""
    from dataclasses import dataclass

    import torch
    from torch import nn

    from msa_toolkit.models import ModelConfig, ModelOutput, MSAModel, RegressionObjective, register_model
    from msa_toolkit.layers import masked_mean


    @dataclass(frozen=True)
    class PooledConfig(ModelConfig):
        """Masked mean per modality, one Linear each, one Linear head."""

        # per-modality width
        hidden: int = 8


    @register_model("throwaway_pooled", PooledConfig, presets={"tiny": {"hidden": 4}}, summary="test model")
    class Pooled(MSAModel):
        def __init__(self, config: PooledConfig):
            super().__init__(config)
            dims = {"text": config.text_dim, "audio": config.audio_dim, "vision": config.vision_dim}
            self.proj = nn.ModuleDict({m: nn.Linear(d, config.hidden) for m, d in dims.items()})
            self.head = nn.Linear(3 * config.hidden, 1)
            self.set_objective(RegressionObjective("l1"))

        def forward(self, batch) -> ModelOutput:
            pooled = [masked_mean(self.proj[m](batch.features(m)[0]), batch.features(m)[1]) for m in self.proj]
            return ModelOutput(self.head(torch.cat(pooled, dim=-1)).squeeze(-1))
''')


@pytest.fixture
def extra_model_dir(tmp_path, monkeypatch):
    """A folder scanned as part of ``msa_toolkit.models``; the registry is restored afterwards."""
    list_models()  # the real models first, so the restored registry is complete
    monkeypatch.setattr(models_package, "__path__", [*models_package.__path__, str(tmp_path)])
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))
    monkeypatch.setattr(_registry, "_loaded", False)
    before = set(sys.modules)
    yield tmp_path
    for module in set(sys.modules) - before:
        if module.startswith("msa_toolkit.models."):
            del sys.modules[module]
            short = module.rsplit(".", 1)[1]
            if hasattr(models_package, short):
                delattr(models_package, short)


def write_module(folder, name: str, source: str) -> None:
    (folder / f"{name}.py").write_text(source)
    importlib.invalidate_caches()


def test_a_new_model_file_is_discovered_and_passes_the_registry_checks(extra_model_dir):
    write_module(extra_model_dir, "throwaway_model", THROWAWAY_MODEL)
    names = list_models()
    assert "throwaway_pooled" in names and set(MODELS) <= set(names)
    assert get_entry("throwaway_pooled").builder.__name__ == "Pooled"  # the class itself is registered
    check_forward_backward("throwaway_pooled")
    check_deterministic("throwaway_pooled")
    for case in EDGE_CASES:
        check_edge_inputs("throwaway_pooled", case)
    check_padding_invariance("throwaway_pooled")
    check_predict("throwaway_pooled")
    check_config_roundtrip("throwaway_pooled")


def test_a_broken_import_in_a_model_module_raises(extra_model_dir):
    write_module(extra_model_dir, "broken_model", "from msa_toolkit.models.layerz import masked_mean  # typo\n")
    with pytest.raises(ModuleNotFoundError, match="layerz"):
        list_models()
    with pytest.raises(ModuleNotFoundError, match="layerz"):  # and again: never a silently partial registry
        list_models()


def test_private_modules_are_not_scanned_and_no_block_lives_among_the_models():
    found = set(_registry.model_modules())
    assert {"msa_toolkit.models.baselines", "msa_toolkit.models.mmcl", "msa_toolkit.models.mind"} <= found
    assert not any(m.rsplit(".", 1)[1].startswith("_") for m in found)
    # the reusable blocks are in msa_toolkit.layers, so the scan needs no list of modules to skip
    assert not hasattr(_registry, "HELPER_MODULES")
    assert not {"layers", "transformer", "heads", "losses", "dropout", "text_encoder"} & {
        m.rsplit(".", 1)[1] for m in found}
