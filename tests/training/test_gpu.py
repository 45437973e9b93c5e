"""CUDA paths: autocast (bf16, fp16 + GradScaler) and checkpoints that load on CPU. Run with -m gpu."""

import pytest
import torch

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _need_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16", "auto"])
@pytest.mark.parametrize("name", ["late_fusion", "mult"])
def test_cuda_training_with_autocast(tiny_ds, tmp_path, precision, name):
    from msa_toolkit.training.api import evaluate, train
    from msa_toolkit.training.checkpoint import load_checkpoint

    res = train(name, tiny_ds, tmp_path / "run", preset="tiny",
                overrides={"trainer.device": "cuda", "trainer.precision": precision, "trainer.epochs": 3,
                           "trainer.batch_size": 8, "trainer.progress": False, "trainer.plots": False,
                           "trainer.grad_clip_norm": 1.0})
    run = res.runs[0]
    assert all(torch.isfinite(torch.tensor(r["train"]["total"])) for r in run.history)
    assert run.history[-1]["train"]["total"] < run.history[0]["train"]["total"] * 1.05
    ck = load_checkpoint(tmp_path / "run" / "best.safetensors")  # CPU load of CUDA-trained weights
    assert next(ck.model.parameters()).device.type == "cpu"
    cpu = evaluate(tmp_path / "run" / "best.safetensors", tiny_ds, device="cpu")
    assert cpu["mae"] == pytest.approx(run.test["mae"], abs=0.05)  # autocast vs fp32 evaluation
