import json

import numpy as np
import pytest
import torch

from msa_toolkit.data.batch import synthetic_batch
from msa_toolkit.data.synthetic import synthetic_spec
from msa_toolkit.errors import CheckpointError
from msa_toolkit.models import create_model, list_models
from msa_toolkit.training.checkpoint import (
    load_checkpoint, load_resume_state, read_checkpoint_metadata, save_checkpoint, save_resume_state,
)
from msa_toolkit.training.trainer import TrainConfig

DIMS = (8, 4, 4)


def _model(name):
    torch.manual_seed(0)
    return create_model(name, "tiny", text_dim=DIMS[0], audio_dim=DIMS[1], vision_dim=DIMS[2],
                        text_len=6, audio_len=9, vision_len=7).eval()


@pytest.mark.parametrize("name", list_models())
def test_round_trip_predictions_identical(tmp_path, name):
    model = _model(name)
    batch = synthetic_batch(4, lengths=(6, 9, 7), dims=DIMS, seed=1)
    with torch.no_grad():
        before = model(batch).prediction
    path = save_checkpoint(tmp_path / "m.safetensors", model, synthetic_spec(DIMS), TrainConfig(epochs=3),
                           {"test": {"mae": 0.5}})
    ck = load_checkpoint(path)
    assert ck.model_name == name and not ck.model.training
    with torch.no_grad():
        after = ck.model(batch).prediction
    torch.testing.assert_close(before, after, rtol=0, atol=0)
    # every parameter and buffer identical, the objective's auxiliary learners included
    sd0, sd1 = model.state_dict(), ck.model.state_dict()
    assert sd0.keys() == sd1.keys()
    for k in sd0:
        assert torch.equal(sd0[k], sd1[k]), k


def test_metadata_complete_and_extra_arrays(tmp_path):
    model = _model("late_fusion")
    spec = synthetic_spec(DIMS)
    mean = np.arange(8, dtype=np.float32)
    extra = {"normalization": {"text": {"mean": mean, "std": torch.ones(8)}}, "max_lengths": {"text": 6}, "seed": 3}
    path = save_checkpoint(tmp_path / "m.safetensors", model, spec, TrainConfig(epochs=7).to_dict(),
                           {"valid": {"mae": 0.7}, "test": {"mae": 0.8, "corr": float("nan")}}, extra)
    doc = read_checkpoint_metadata(path)
    for key in ("format_version", "toolkit_version", "model_name", "model_config", "feature_spec",
                "train_config", "metrics", "extra"):
        assert key in doc, key
    ck = load_checkpoint(path)
    assert ck.spec.fingerprint() == spec.fingerprint() and not ck.spec.diff(spec)
    assert ck.train_config["epochs"] == 7
    assert ck.metrics["valid"]["mae"] == 0.7 and ck.metrics["test"]["corr"] is None  # NaN -> null
    assert ck.model_config == model.config.to_dict()
    np.testing.assert_array_equal(ck.extra["normalization"]["text"]["mean"], mean)
    np.testing.assert_array_equal(ck.extra["normalization"]["text"]["std"], np.ones(8, np.float32))
    assert ck.extra["max_lengths"] == {"text": 6} and ck.extra["seed"] == 3
    assert ck.toolkit_version


def test_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"definitely not safetensors")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(junk)
    # a run's last.pt given where the model is expected: the message names best.safetensors
    last = save_resume_state(tmp_path / "last.pt", {"epoch": 1})
    with pytest.raises(CheckpointError, match=r"resumable training state.*best\.safetensors"):
        load_checkpoint(last)
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    with pytest.raises(CheckpointError, match="no 'msa_toolkit' metadata"):
        load_checkpoint(bare)
    model = _model("late_fusion")
    path = save_checkpoint(tmp_path / "m.safetensors", model, None)
    tensors = {k: v for k, v in model.state_dict().items()}
    doc = read_checkpoint_metadata(path)
    for change, msg in (({"format_version": 99}, "format version 99"), ({"model_name": "nope"}, "unknown model"),
                        ({"model_config": {**doc["model_config"], "hidden": 5}}, "do not match"),
                        # sizes no model is built with: refused before any memory is allocated
                        ({"model_config": {**doc["model_config"], "hidden": 2_000_000}}, "parameters, more than"),
                        ({"model_config": {**doc["model_config"], "hidden": -3}}, "model.hidden must be a positive"),
                        ({"model_config": {**doc["model_config"], "dropout": 1.5}}, r"in \[0, 1\)")):
        bad = tmp_path / "bad.safetensors"
        save_file({k: v.contiguous().clone() for k, v in tensors.items()}, str(bad),
                  metadata={"msa_toolkit": json.dumps({**doc, **change})})
        with pytest.raises(CheckpointError, match=msg):
            load_checkpoint(bad)


def test_resume_state_round_trip(tmp_path):
    p = save_resume_state(tmp_path / "last.pt", {"epoch": 3, "t": torch.arange(3)})
    st = load_resume_state(p)
    assert st["epoch"] == 3 and torch.equal(st["t"], torch.arange(3))
    (tmp_path / "bad.pt").write_bytes(b"xx")
    with pytest.raises(CheckpointError):
        load_resume_state(tmp_path / "bad.pt")
