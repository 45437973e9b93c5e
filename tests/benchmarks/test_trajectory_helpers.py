"""The training-trajectory parity machinery (benchmarks/parity/trajectory_common.py) on tiny modules.

The trajectory scripts need the authors' checkouts; these tests check the lock-step driver, the
in-memory data module, the per-thread noise and the comparisons without them.
"""

from __future__ import annotations

import threading

import pytest
import torch
from test_parity_helpers import _load, pc  # the parity scripts' loader (tests/benchmarks is on sys.path)
from torch import nn

tc = _load("trajectory_common")


def _pair(seed: int = 0) -> tuple[nn.Linear, nn.Linear, list]:
    torch.manual_seed(seed)
    ref, tk = nn.Linear(3, 1), nn.Linear(3, 1)
    tk.load_state_dict(ref.state_dict())
    maps = [pc.same("weight", "weight"), pc.same("bias", "bias")]
    return ref, tk, maps


def _loop(model: nn.Module, xs: list[torch.Tensor], lr: float, steps: int | None = None):
    def run():
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for x in xs[:steps]:
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    return run


def test_lockstep_compares_every_step_with_both_models_frozen():
    ref, tk, maps = _pair()
    xs = [torch.randn(4, 3, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    seen = []

    def on_step(step, lr_ref, lr_tk):
        seen.append((step, tc.worst(tc.mapped_diffs(maps, ref, tk)[0])[1], lr_ref, lr_tk,
                     threading.current_thread().name))

    lock = tc.Lockstep(ref, tk, on_step)
    lock.run(_loop(ref, xs, 0.1), _loop(tk, xs, 0.1))
    assert [s[0] for s in seen] == [1, 2, 3, 4, 5]
    assert all(s[1] == 0.0 and s[2] == s[3] == [0.1] for s in seen)
    assert lock.extra_reference == lock.extra_toolkit == 0


def test_lockstep_sees_a_different_learning_rate_and_diverging_weights():
    ref, tk, maps = _pair()
    xs = [torch.randn(4, 3, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    diffs, lrs = [], []
    lock = tc.Lockstep(ref, tk, lambda s, r, t: (diffs.append(tc.worst(tc.mapped_diffs(maps, ref, tk)[0])[1]),
                                                lrs.append(tc.lr_diff(r, t))))
    lock.run(_loop(ref, xs, 0.1), _loop(tk, xs, 0.2))
    assert all(d > 0 for d in diffs) and lrs == pytest.approx([0.1] * 3)


@pytest.mark.parametrize("ref_steps,tk_steps", [(5, 3), (3, 5)])
def test_lockstep_counts_steps_only_one_side_took(ref_steps, tk_steps):
    ref, tk, _ = _pair()
    xs = [torch.randn(2, 3) for _ in range(5)]
    lock = tc.Lockstep(ref, tk, lambda *a: None, timeout=30)
    lock.run(_loop(ref, xs, 0.1, ref_steps), _loop(tk, xs, 0.1, tk_steps))
    assert lock.steps == 3
    assert (lock.extra_reference, lock.extra_toolkit) == (ref_steps - 3, tk_steps - 3)
    report = pc.ParityReport("x", "o/r", "c")
    tc.finish_trajectory(report, lock, 3)
    assert report.checks[0].status == "FAIL" and report.checks[1].status == "pass"


def test_lockstep_reraises_a_reference_failure_and_stops_on_a_comparison_error():
    ref, tk, _ = _pair()
    xs = [torch.randn(2, 3) for _ in range(3)]

    def broken():
        raise ValueError("reference broke")

    with pytest.raises(RuntimeError, match="reference broke"):
        tc.Lockstep(ref, tk, lambda *a: None, timeout=30).run(broken, _loop(tk, xs, 0.1))

    def fail(*a):
        raise AssertionError("comparison failed")

    with pytest.raises(AssertionError, match="comparison failed"):
        tc.Lockstep(ref, tk, fail, timeout=30).run(_loop(ref, xs, 0.1), _loop(tk, xs, 0.1))


def test_record_step_and_lr_diff():
    report = pc.ParityReport("x", "o/r", "c")
    tc.record_step(report, tc.StepRow(3, [1e-4], [1e-4 + 1e-9], "w", 2e-10, 0.5, ["epoch end"]), 1e-9)
    assert [c.status for c in report.checks] == ["pass", "FAIL"]
    assert "epoch end" in report.checks[0].note
    assert tc.lr_diff([1.0, 2.0], [1.0]) == float("inf")


def test_list_data_feeds_the_same_fixed_order_every_epoch():
    data = tc.ListData([1, 2, 3], [4], [5])
    loader = data.train_loader(bucket_by_length=True)
    assert len(loader) == 3 and list(loader) == [1, 2, 3] == list(loader) == list(data.train_loader())
    assert data.loader("valid") == [4] and data.split_names == ("train", "valid", "test")
    with pytest.raises(ValueError):
        data.train_loader(distributed=True)


def test_mapped_diffs_skips_entries_an_optimiser_step_unties():
    ref, tk, maps = _pair()
    with torch.no_grad():
        tk.bias.add_(0.25)
    maps.append(pc.ParamMap(("bias",), ("bias",), lambda r: [r[0]], lambda rg, tg: (rg[0], tg[0]), elementwise=False))
    diffs, keys = tc.mapped_diffs(maps, ref, tk)
    assert diffs["bias"][0] == pytest.approx(0.25) and diffs["weight"][0] == 0.0
    assert len(diffs) == 2 and keys == {}  # the non-elementwise duplicate is not compared


def test_mapped_diffs_reports_attention_key_biases_apart():
    """The key third of a fused q/k/v bias and a BERT key bias have zero exact gradient: information only."""
    ref = nn.ModuleDict({"attn": nn.ModuleDict({"qkv": nn.Linear(2, 6)}), "key": nn.Linear(2, 2)})
    tk = nn.ModuleDict({"attn": nn.ModuleDict({"qkv": nn.Linear(2, 6)}),
                        "attention": nn.ModuleDict({"self": nn.ModuleDict({"key": nn.Linear(2, 2)})})})
    maps = [pc.same("attn.qkv.weight", "attn.qkv.weight"), pc.same("attn.qkv.bias", "attn.qkv.bias"),
            pc.same("key.weight", "attention.self.key.weight"), pc.same("key.bias", "attention.self.key.bias")]
    pc.load_mapped(maps, ref, tk)
    with torch.no_grad():
        tk.attn.qkv.bias[2:4] += 0.5        # the key third
        tk.attention.self.key.bias += 0.25
    diffs, keys = tc.mapped_diffs(maps, ref, tk)
    assert max(v[0] for v in diffs.values()) == 0.0
    assert keys["attn.qkv.bias"][0] == pytest.approx(0.5) and keys["attention.self.key.bias"][0] == pytest.approx(0.25)
    with torch.no_grad():
        tk.attn.qkv.bias[0] += 1.0          # a query bias is compared
    assert tc.mapped_diffs(maps, ref, tk)[0]["attn.qkv.bias"][0] == pytest.approx(1.0)
    row = tc.step_row(1, [0.1], [0.1], maps, ref, tk, ["x"])
    assert row.max_abs_diff == pytest.approx(1.0) and row.key_bias_diff == pytest.approx(0.5)


def test_epoch_batches_hand_out_one_list_per_pass_and_list_data_wraps_them():
    eb = tc.EpochBatches([[1, 2], [3, 4], [5, 6]])
    assert len(eb) == 2 and [list(eb) for _ in range(4)] == [[1, 2], [3, 4], [5, 6], [5, 6]]
    with pytest.raises(ValueError):
        tc.EpochBatches([[1, 2], [3]])
    data = tc.ListData([[1, 2], [3, 4]], [7], [8], per_epoch=True)
    loader = data.train_loader()
    assert data.loader("train") == [1, 2] and [list(loader), list(loader)] == [[1, 2], [3, 4]]
    assert list(data.train_loader()) == [1, 2]  # a fresh pass count per loader


def test_thread_noise_gives_each_thread_its_draws_in_its_own_order():
    draws = lambda k: {"a": torch.full((2,), 10.0 * k + 1), "b": torch.full((2,), 10.0 * k + 2)}  # noqa: E731
    training = {"on": True}
    noise = tc.ThreadNoise(draws, {"MainThread": (("a", "b"), lambda: True),
                                   "other": (("b", "a"), lambda: training["on"])})
    got = {}

    def other():
        got["other"] = [float(torch.randn_like(torch.zeros(2))[0]) for _ in range(4)]
        training["on"] = False
        got["eval"] = torch.randn_like(torch.zeros(2)).shape

    with noise.active():
        t = threading.Thread(target=other, name="other")
        t.start()
        t.join()
        got["main"] = [float(torch.randn_like(torch.zeros(2))[0]) for _ in range(3)]
    assert got["other"] == [2.0, 1.0, 12.0, 11.0] and got["main"] == [1.0, 2.0, 11.0]
    assert got["eval"] == (2,) and torch.randn_like is noise._original


def test_patched_restores_and_removes():
    holder = type("H", (), {"x": 1})
    with tc.patched((holder, "x", 2), (holder, "y", 3)):
        assert holder.x == 2 and holder.y == 3
    assert holder.x == 1 and not hasattr(holder, "y")


def test_tiny_bert_is_the_same_model_on_both_loads(tmp_path):
    pytest.importorskip("transformers")
    from transformers import BertModel, BertTokenizer

    path = tc.tiny_bert(tmp_path / "bert", seed=3)
    a, b = BertModel.from_pretrained(path), BertModel.from_pretrained(path)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert BertTokenizer.from_pretrained(path).convert_tokens_to_ids("[CLS]") == 2
    ids = tc.token_ids(2, 6, torch.Generator().manual_seed(0))
    assert ids[:, 0].tolist() == [2, 2] and ids[:, -1].tolist() == [3, 3] and int(ids.max()) < a.config.vocab_size


def test_wide_reference_float_keeps_float64_only_in_the_reference_thread():
    x = torch.zeros(2, dtype=torch.float64)
    got = {}

    def reference():
        got["ref64"], got["ref16"] = x.float().dtype, torch.zeros(2, dtype=torch.float16).float().dtype

    with tc.patched(tc.wide_reference_float("reference-loop")):
        t = threading.Thread(target=reference, name="reference-loop")
        t.start()
        t.join()
        got["main"] = x.float().dtype
    assert got == {"ref64": torch.float64, "ref16": torch.float32, "main": torch.float32}
    assert x.float().dtype == torch.float32


def test_add_movement_reports_how_far_training_moved():
    model = nn.Linear(2, 1)
    start = tc.snapshot(model)
    with torch.no_grad():
        model.weight[0, 1] += 0.375
    report = pc.ParityReport("x", "o/r", "c")
    assert tc.add_movement(report, start, model) == pytest.approx(0.375)
    assert report.checks[0].status == "info"
