"""Mixed precision on CPU: the autocast code path that CUDA runs too (bf16), checked for every model.

CUDA itself (fp16 + GradScaler, bf16 on a GPU) is covered by ``test_gpu.py`` (marker ``gpu``);
what can be checked without a GPU is here: the precision switch, and that every model's
forward, objective and backward run under ``torch.autocast(dtype=bfloat16)`` and train.
"""

import math

import pytest
import torch

from msa_toolkit.errors import MSAError
from msa_toolkit.models import list_models
from msa_toolkit.training.trainer import resolve_precision

CPU = torch.device("cpu")


def test_resolve_precision_on_cpu():
    assert resolve_precision("auto", CPU) is None  # fp32 unless asked
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    with pytest.raises(MSAError, match="fp16.*CUDA"):
        resolve_precision("fp16", CPU)
    with pytest.raises(MSAError, match="auto|fp32|bf16|fp16"):
        resolve_precision("half", CPU)


def test_fp16_on_cpu_is_refused_before_training(tiny_ds, tmp_path, fast):
    from msa_toolkit.training.api import train

    with pytest.raises(MSAError, match="fp16"):
        train("text_only", tiny_ds, tmp_path / "run", preset="tiny",
              overrides={**fast, "trainer.precision": "fp16", "trainer.epochs": 1})
    assert not (tmp_path / "run" / "seed_1" / "best.safetensors").exists()


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_under_bf16_autocast(name, request, tmp_path, fast):
    from msa_toolkit.models import get_entry
    from msa_toolkit.training.api import evaluate, train
    from msa_toolkit.training.checkpoint import load_checkpoint

    multitask = getattr(get_entry(name).builder, "needs_unimodal_labels", False)
    tiny_ds = request.getfixturevalue("tiny_mt_ds" if multitask else "tiny_ds")

    seen: set[torch.dtype] = set()

    def watch(trainer, record):  # after epoch 1: record the dtype of every Linear output from then on
        if record["epoch"] == 1:
            for m in trainer.model.modules():
                if isinstance(m, torch.nn.Linear):
                    m.register_forward_hook(lambda mod, args, out: seen.add(out.dtype))

    res = train(name, tiny_ds, tmp_path / "run", preset="tiny", callbacks=[watch],
                overrides={**fast, "trainer.precision": "bf16", "trainer.epochs": 2})
    run = res.runs[0]
    assert torch.bfloat16 in seen  # the autocast really ran (Linear layers compute in bf16)
    for record in run.history:
        assert all(math.isfinite(v) for v in record["train"].values()), record["train"]
    assert math.isfinite(run.test["mae"]) and math.isfinite(run.valid["mae"])
    # weights stay fp32 (autocast casts activations only) and evaluate in fp32 afterwards
    ck = load_checkpoint(tmp_path / "run" / "seed_1" / "best.safetensors")
    assert {p.dtype for p in ck.model.parameters()} == {torch.float32}
    fp32 = evaluate(tmp_path / "run" / "seed_1" / "best.safetensors", tiny_ds, device="cpu")
    assert fp32["mae"] == pytest.approx(run.test["mae"], abs=0.1)  # bf16 vs fp32 evaluation of one model


def test_tfn_lstm_runs_in_fp32_under_cpu_bf16_autocast():
    """oneDNN's bf16 LSTM kernel needs AVX-512; the TFN text LSTM must work on every CPU under autocast."""
    from msa_toolkit.data.batch import synthetic_batch
    from msa_toolkit.models import create_model

    torch.manual_seed(0)
    model = create_model("tfn", "tiny", text_dim=8, audio_dim=4, vision_dim=4, text_len=6, audio_len=8,
                         vision_len=8)
    seen = []
    model.lstm.register_forward_hook(lambda mod, args, out: seen.append((args[0].dtype, out[0].dtype)))
    batch = synthetic_batch(4, lengths=(6, 8, 8), dims=(8, 4, 4), seed=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
    assert seen == [(torch.float32, torch.float32)]
    assert torch.isfinite(out.prediction.float()).all()
