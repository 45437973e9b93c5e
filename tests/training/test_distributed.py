"""Two-process DistributedDataParallel on CPU with the gloo backend."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, ds: str, out: str, results: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from msa_toolkit.data.module import DataModule
    from msa_toolkit.models import create_model
    from msa_toolkit.training import distributed as D
    from msa_toolkit.training.trainer import TrainConfig, Trainer

    ctx = D.setup("cpu")
    assert ctx.distributed and ctx.rank == rank and torch.distributed.get_backend() == "gloo"
    try:
        dm = DataModule(ds, batch_size=8, seed=1)
        torch.manual_seed(100 + rank)  # different init per rank: DDP must broadcast rank 0's weights
        model = create_model("late_fusion", "tiny", text_dim=8, audio_dim=4, vision_dim=4, text_len=6,
                             audio_len=8, vision_len=8)
        cfg = TrainConfig(epochs=2, progress=False, plots=False, device="cpu", seed=1, grad_accum=1)
        res = Trainer(model, dm, cfg, out, ctx=ctx).fit()
        torch.save({"state": model.state_dict(), "test": res.test, "valid": res.valid,
                    "steps": res.history[-1]["step"], "train": [r["train"] for r in res.history]},
                   os.path.join(results, f"rank{rank}.pt"))
    finally:
        D.teardown(ctx)


def test_ddp_gloo_two_processes_identical_weights(tiny_ds, tmp_path):
    out, results = tmp_path / "run", tmp_path / "results"
    results.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(tiny_ds), str(out), str(results)), nprocs=2, join=True)
    r0, r1 = (torch.load(results / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    # metrics gathered over ranks: both ranks saw the same (whole) splits
    assert r0["test"] == r1["test"] and r0["valid"] == r1["valid"] and r0["train"] == r1["train"]
    # the train split (48) was sharded: 24 per rank / batch 8 = 3 steps per epoch
    assert r0["steps"] == 6
    # rank 0 wrote the run; the gathered test predictions cover the whole split
    assert len((out / "predictions_test.csv").read_text().splitlines()) == 1 + 16
    from msa_toolkit.training.checkpoint import load_checkpoint

    ck = load_checkpoint(out / "best.safetensors")
    assert ck.metrics["test"]["mae"] == pytest.approx(r0["test"]["mae"])
    for k, v in ck.model.state_dict().items():
        assert torch.equal(v, r0["state"][k]), k


def _reduce_worker(rank: int, world: int, port: int, results: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from msa_toolkit.training import distributed as D

    ctx = D.setup("cpu")
    try:
        out = D.all_reduce_mean(ctx, {"final_l1": 1.0 + rank, "audio_l1": 3.0, "total": 2.0 * rank})
        torch.save(out, os.path.join(results, f"reduce{rank}.pt"))
    finally:
        D.teardown(ctx)


def test_all_reduce_mean_keeps_the_key_order(tmp_path):
    """Under DDP the loss components came back in alphabetical order (audio_l1, final_l1, ...), not the model's."""
    mp.spawn(_reduce_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for r in (0, 1):
        out = torch.load(tmp_path / f"reduce{r}.pt")
        assert list(out) == ["final_l1", "audio_l1", "total"]
        assert out == {"final_l1": 1.5, "audio_l1": 3.0, "total": 1.0}
