"""The parity scripts' shared helper on tiny synthetic modules (the authors' code is not needed)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

PARITY = Path(__file__).resolve().parents[2] / "benchmarks" / "parity"


def _load(name: str):
    sys.path.insert(0, str(PARITY))
    try:
        spec = importlib.util.spec_from_file_location(name, PARITY / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # dataclasses look their module up
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(PARITY))


pc = _load("parity_common")


class FusedRef(nn.Module):
    """Reference-style: fused q/k/v in-projection, one LayerNorm used twice, a flattened-sequence Linear."""

    def __init__(self, d: int = 4, L: int = 3):
        super().__init__()
        self.in_proj = nn.Parameter(torch.randn(3 * d, d))
        self.norm = nn.LayerNorm(d)
        self.flat = nn.Linear(d * L, d)
        self.d, self.L = d, L

    def forward(self, x, y):  # x [B, L, d], y [B, L, d]
        q, k, v = (self.norm(x) @ self.in_proj.t()).chunk(3, -1)
        ky = self.norm(y) @ self.in_proj[self.d:2 * self.d].t()
        h = torch.softmax(q @ (k + ky).transpose(1, 2), -1) @ v
        return self.flat(h.transpose(1, 2).reshape(h.shape[0], -1)).sum(-1)


class SplitTk(nn.Module):
    """Toolkit-style: separate q/k/v, two LayerNorms, mean-pool + Linear(d, d)."""

    def __init__(self, d: int = 4):
        super().__init__()
        self.to_q, self.to_k, self.to_v = (nn.Linear(d, d, bias=False) for _ in range(3))
        self.norm_x, self.norm_y = nn.LayerNorm(d), nn.LayerNorm(d)
        self.pool = nn.Linear(d, d)

    def forward(self, x, y):
        h = self.norm_x(x)
        q, k, v = self.to_q(h), self.to_k(h), self.to_v(h)
        ky = self.norm_y(y) @ self.to_k.weight.t()
        h = torch.softmax(q @ (k + ky).transpose(1, 2), -1) @ v
        return self.pool(h.mean(1)).sum(-1)


def _maps(d: int, L: int):
    def prepare(r):
        return [r[0].view(d, d, L).mean(-1, keepdim=True).expand(d, d, L).reshape(d, d * L)]

    pooled = pc.ParamMap(("flat.weight",), ("pool.weight",), lambda r: [r[0].view(d, d, L).sum(-1)],
                         lambda rg, tg: (rg[0].view(d, d, L).mean(-1), tg[0]), elementwise=False, prepare=prepare)
    return [pc.split("in_proj", ["to_q.weight", "to_k.weight", "to_v.weight"]),
            pc.tied("norm.weight", ["norm_x.weight", "norm_y.weight"]),
            pc.tied("norm.bias", ["norm_x.bias", "norm_y.bias"]),
            pooled, pc.same("flat.bias", "pool.bias")]


def test_mapping_makes_two_differently_built_models_agree_in_values_and_gradients():
    torch.manual_seed(0)
    d, L = 4, 3
    ref, tk = FusedRef(d, L), SplitTk(d)
    maps = _maps(d, L)
    pc.check_coverage(maps, ref, tk)
    pc.load_mapped(maps, ref, tk)
    x, y = torch.randn(2, L, d), torch.randn(2, L, d)
    out_r, out_t = ref(x, y), tk(x, y)
    assert pc.max_abs_diff(out_r, out_t) < 1e-5
    out_r.sum().backward()
    out_t.sum().backward()
    diffs = pc.grad_diffs(maps, ref, tk)
    assert set(diffs) == {"to_q.weight,to_k.weight,to_v.weight", "norm_x.weight,norm_y.weight",
                          "norm_x.bias,norm_y.bias", "pool.weight", "pool.bias"}
    assert max(d for d, _ in diffs.values()) < 1e-5


def test_fused_concatenates_separate_reference_projections_into_one_toolkit_tensor():
    torch.manual_seed(4)
    ref = nn.ModuleDict({n: nn.Linear(3, 2, bias=False) for n in ("to_q", "to_k", "to_v")})
    tk = nn.Linear(3, 6, bias=False)
    maps = [pc.fused([f"{n}.weight" for n in ("to_q", "to_k", "to_v")], "weight")]
    pc.check_coverage(maps, ref, tk)
    pc.load_mapped(maps, ref, tk)
    x = torch.randn(5, 3)
    out_r = torch.cat([ref[n](x) for n in ("to_q", "to_k", "to_v")], -1)
    assert torch.equal(out_r, tk(x))
    out_r.pow(2).sum().backward()
    tk(x).pow(2).sum().backward()
    assert max(d for d, _ in pc.grad_diffs(maps, ref, tk).values()) < 1e-6


def test_compare_training_passes_for_identical_models_and_reports_json(tmp_path):
    torch.manual_seed(1)
    ref, tk = nn.Linear(3, 2), nn.Linear(3, 2)
    maps = [pc.same("weight", "weight"), pc.same("bias", "bias")]
    pc.load_mapped(maps, ref, tk)
    x = torch.randn(5, 3)
    report = pc.ParityReport("toy", "owner/repo", "abc123")

    def fn(m):
        return lambda: {"out": m(x), "total": m(x).pow(2).mean()}

    pc.compare_training(report, ref, tk, maps, fn(ref), fn(tk), [("forward", "out", "out")],
                        lambda ps: torch.optim.Adam(ps, lr=1e-2))
    assert report.passed and all(c.status == "pass" for c in report.checks)
    assert "toy vs owner/repo@abc123: PASS" in report.table()
    report.write_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["passed"] is True and data["checks"][0]["status"] == "pass"


def test_a_real_difference_fails_and_tolerance_is_relative_above_one():
    torch.manual_seed(2)
    ref, tk = nn.Linear(3, 1), nn.Linear(3, 1)
    maps = [pc.same("weight", "weight"), pc.same("bias", "bias")]
    pc.load_mapped(maps, ref, tk)
    with torch.no_grad():
        tk.bias += 1e-3
    x = torch.randn(4, 3)
    report = pc.ParityReport("toy", "o/r", "c")
    fn = lambda m: lambda: {"out": m(x), "total": m(x).sum()}  # noqa: E731
    pc.compare_training(report, ref, tk, maps, fn(ref), fn(tk), [("forward", "out", "out")],
                        lambda ps: torch.optim.SGD(ps, lr=0.1), steps=1)
    assert not report.passed and report.checks[0].status == "FAIL"
    assert pc.Check("big", 5e-5, 1e-5, scale=10.0).status == "pass"
    assert pc.Check("small", 5e-5, 1e-5, scale=0.5).status == "FAIL"
    assert pc.Check("info", 1.0, None).status == "info"


def test_measured_floor_counts_noise_level_gradients_as_zero_and_resync_realigns_the_models():
    torch.manual_seed(3)
    ref, tk = nn.Linear(3, 1), nn.Linear(3, 1)
    maps = [pc.same("weight", "weight"), pc.same("bias", "bias")]
    pc.load_mapped(maps, ref, tk)
    for p in (*ref.parameters(), *tk.parameters()):
        p.grad = torch.full_like(p, 1e-3)
    with torch.no_grad():
        tk.weight += 1e-4  # as if an adaptive step had flipped the sign of noise-level gradients
    real, noise = pc.param_diffs(maps, ref, tk)
    assert "weight" in real and "weight" not in noise
    real, noise = pc.param_diffs(maps, ref, tk, floor={"weight": 1e-2})
    assert "weight" not in real and noise["weight"][0] == pytest.approx(1e-4, rel=1e-2)
    x = torch.randn(4, 3)
    report = pc.ParityReport("toy", "o/r", "c")
    fn = lambda m: lambda: {"out": m(x), "total": m(x).sum()}  # noqa: E731
    pc.compare_training(report, ref, tk, maps, fn(ref), fn(tk), [("forward", "out", "out")],
                        lambda ps: torch.optim.Adam(ps, lr=0.1), measured_floor=True, resync=True)
    assert report.checks[0].status == "FAIL"  # step 0: the offset is still there
    assert all(c.status != "FAIL" for c in report.checks if c.name.startswith("step 1"))  # resynced
    assert any("resync" in x for x in report.not_compared)


def test_coverage_names_missing_and_unmapped_parameters():
    ref, tk = nn.Linear(2, 2), nn.Linear(2, 2)
    with pytest.raises(ValueError, match="'bias' is not mapped"):
        pc.check_coverage([pc.same("weight", "weight")], ref, tk)
    with pytest.raises(ValueError, match="does not exist"):
        pc.check_coverage([pc.same("weight", "weight"), pc.same("bias", "nope")], ref, tk)
    pc.check_coverage([pc.same("weight", "weight")], ref, tk, ref_unused=("bias",), tk_unused=("bias",))


def test_missing_or_wrong_reference_dir_exits_with_a_clear_message(tmp_path):
    with pytest.raises(SystemExit, match="no reference checkout given.*github.com/o/r"):
        pc.check_reference_dir(None, ("a.py",), "o/r")
    with pytest.raises(SystemExit, match="is not a directory"):
        pc.check_reference_dir(tmp_path / "nope", ("a.py",), "o/r")
    with pytest.raises(SystemExit, match="missing a.py"):
        pc.check_reference_dir(tmp_path, ("a.py",), "o/r")
    (tmp_path / "a.py").write_text("X = 1\n")
    assert pc.check_reference_dir(tmp_path, ("a.py",), "o/r") == tmp_path.resolve()


def test_import_reference_forgets_the_checkout_modules(tmp_path):
    for name, value in (("one", 1), ("two", 2)):
        pkg = tmp_path / name / "models"
        pkg.mkdir(parents=True)
        (pkg / "net.py").write_text(f"VALUE = {value}\n")
    a = pc.import_reference(tmp_path / "one", "models.net")
    b = pc.import_reference(tmp_path / "two", "models.net")
    assert (a.VALUE, b.VALUE) == (1, 2)
    assert "models.net" not in sys.modules and str(tmp_path / "one") not in sys.path
    (tmp_path / "one" / "REFERENCE_COMMIT").write_text("deadbeef\n")
    assert pc.reference_commit(tmp_path / "one") == "deadbeef"


def _fake_mmsa(root: Path) -> Path:
    """A checkout shaped like thuiar/MMSA: package __init__ files that must not run, a model importing a name
    from the bare sub-network package and a stubbed module, and config_regression.json."""
    src = root / "src" / "MMSA"
    for pkg in ("", "models", "models/singleTask", "models/subNets", "trains", "trains/singleTask"):
        (src / pkg).mkdir(parents=True, exist_ok=True)
        (src / pkg / "__init__.py").write_text("raise RuntimeError('package __init__ ran')\n")
    (src / "models/singleTask/NET.py").write_text("from ..subNets import Encoder\nimport fake_dep\n"
                                                  "VALUE = (Encoder, fake_dep.X)\n")
    (src / "trains/singleTask/NET.py").write_text("VALUE = 2\n")
    (src / "config").mkdir()
    (src / "config/config_regression.json").write_text(json.dumps({
        "datasetCommonParams": {"mosi": {"aligned": {"seq_lens": [50], "feature_dims": [1]},
                                         "unaligned": {"seq_lens": [60], "feature_dims": [2]}}},
        "net": {"commonParams": {"feature_dims": [3], "a": 1}, "datasetParams": {"mosi": {"a": 2, "b": 3}}}}))
    return root


def test_import_mmsa_skips_package_inits_and_forgets_its_stubs(tmp_path):
    mr = _load("mmsa_reference")
    root = mr.mmsa_checkout(str(_fake_mmsa(tmp_path)), "models/singleTask/NET.py")
    stub = SimpleNamespace(X=7)
    mod = mr.import_mmsa(root, "MMSA.models.singleTask.NET", attributes={mr.SUBNETS: {"Encoder": "enc"}},
                         stubs={"fake_dep": stub})
    assert mod.VALUE == ("enc", 7)
    assert "fake_dep" not in sys.modules and "MMSA.models.singleTask.NET" not in sys.modules
    with pytest.raises(RuntimeError, match="package __init__ ran"):  # the trainer packages are not bare by default
        mr.import_mmsa(root, "MMSA.trains.singleTask.NET")
    assert mr.import_mmsa(root, "MMSA.trains.singleTask.NET", mr.TRAINER_PACKAGES).VALUE == 2
    with pytest.raises(SystemExit, match="missing src/MMSA/models/singleTask/OTHER.py"):
        mr.mmsa_checkout(str(root), "models/singleTask/OTHER.py")


def test_mmsa_args_merges_the_config_as_mmsa_does(tmp_path):
    mr = _load("mmsa_reference")
    root = _fake_mmsa(tmp_path)
    args = mr.mmsa_args(root, "net", b=4)
    assert (args.seq_lens, args.feature_dims, args.a, args.b) == ([60], [3], 2, 4)
    assert (args.model_name, args.dataset_name, args.train_mode, str(args.device)) == ("net", "mosi", "regression",
                                                                                       "cpu")
    assert mr.mmsa_args(root, "net", aligned=True).seq_lens == [50]
    mr.zero_dropout(args, ["a", "feature_dims"])
    assert (args.a, args.feature_dims) == (0.0, [0.0])


def test_injected_noise_hands_out_the_draws_in_order_and_restores_randn_like():
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    original = torch.randn_like
    with pc.injected_noise([b, a]) as given:
        first, second = torch.randn_like(a), torch.randn_like(a)
    assert torch.equal(first, b) and torch.equal(second, a) and len(given) == 2
    assert torch.randn_like is original
    with pytest.raises(RuntimeError, match="more than"):
        with pc.injected_noise([a]):
            torch.randn_like(a), torch.randn_like(a)
    with pytest.raises(ValueError, match="shape"):
        with pc.injected_noise([torch.zeros(3)]):
            torch.randn_like(a)
    with pytest.raises(RuntimeError, match="not used"):
        with pc.injected_noise([a, b]):
            torch.randn_like(a)
    assert torch.randn_like is original


@pytest.mark.parametrize("script", ["parity_almt", "parity_dlf", "parity_mind", "parity_mmcl"])
def test_scripts_fail_clearly_without_reference_dir(script, capsys):
    mod = _load(script)
    with pytest.raises(SystemExit, match="no reference checkout given"):
        mod.main([])


def test_reference_speed_rejects_missing_or_malformed_reference_dirs(tmp_path):
    spec = importlib.util.spec_from_file_location("reference_speed", PARITY.parent / "reference_speed.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["reference_speed"] = mod
    spec.loader.exec_module(mod)
    with pytest.raises(SystemExit, match="at least one --reference-dir"):
        mod.parse_refs([])
    with pytest.raises(SystemExit, match="NAME=PATH"):
        mod.parse_refs([str(tmp_path)])
    with pytest.raises(SystemExit, match="does not look like Haoyu-ha/ALMT"):
        mod.parse_refs([f"almt={tmp_path}"])


def test_reference_speed_bf16_runs_steps_under_autocast():
    spec = importlib.util.spec_from_file_location("reference_speed", PARITY.parent / "reference_speed.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["reference_speed"] = mod
    spec.loader.exec_module(mod)
    seen = []
    a = torch.randn(4, 8)
    step = lambda: seen.append((a @ a.t()).dtype)  # noqa: E731
    cpu = torch.device("cpu")
    assert mod._autocast(step, cpu, "fp32") is step
    mod._autocast(step, cpu, "bf16")()
    step()
    assert seen == [torch.bfloat16, torch.float32]


def test_reference_speed_gemm_share_counts_matrix_multiplies(monkeypatch):
    spec = importlib.util.spec_from_file_location("reference_speed", PARITY.parent / "reference_speed.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["reference_speed"] = mod
    spec.loader.exec_module(mod)
    a = torch.randn(256, 256)
    # with the real profiler: a matrix multiply is counted as GEMM time, an element-wise op is not
    heavy = mod.gemm_share(lambda: [a @ a for _ in range(4)])
    light = mod.gemm_share(lambda: [torch.exp(a).sum() for _ in range(40)])
    assert heavy["gemm_s"] > 0 and light["gemm_s"] == 0 and light["share"] == 0.0
    # the arithmetic on known self times (a stand-in profiler; no measured-time threshold):
    # 0.3 s aten::mm + 0.2 s aten::addmm of 1.0 s in all -> 0.5 s GEMM, share 0.5
    events = [SimpleNamespace(key="aten::mm", self_cpu_time_total=300_000),
              SimpleNamespace(key="aten::addmm", self_cpu_time_total=200_000),
              SimpleNamespace(key="aten::exp", self_cpu_time_total=400_000),
              SimpleNamespace(key="aten::mul", self_cpu_time_total=100_000)]

    class FakeProfile:
        def __init__(self, activities):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def key_averages(self):
            return events

    monkeypatch.setattr(torch.profiler, "profile", FakeProfile)
    assert mod.gemm_share(lambda: None) == {"total_s": 1.0, "gemm_s": 0.5, "share": 0.5}
    monkeypatch.undo()
    side = mod.Side(torch.nn.Linear(4, 4), lambda: None, lambda: a @ a, step=lambda: a @ a)
    bound = mod.gemm_bound(side, side, torch.device("cpu"), "fp32")
    assert set(bound) == {"train", "inference"}
    for g in bound.values():  # the ratio if the toolkit's step were its GEMMs alone
        assert g["ceiling"] == pytest.approx(g["reference"]["total_s"] / g["toolkit"]["gemm_s"])
    row = {"model": "m", "setting": "s", "batch": 1, "params_toolkit": 1, "params_reference": 1, "gemm": bound,
           **{p: {"toolkit": 1.0, "reference": 1.0, "ratio": 1.0} for p in ("train", "inference")}}
    meta = {"date": "d", "machine": "x", "device": "cpu", "threads": 1, "omp_wait_policy": "PASSIVE", "torch": "t",
            "rounds": 1, "steps": 1, "command": "c", "references": {}}
    assert "ceiling with the toolkit's GEMMs" in mod.to_markdown([row], meta)
    with pytest.raises(SystemExit, match="--device cpu"):
        mod.main(["--reference-dir", f"almt={PARITY.parent.parent}", "--gemm-share", "--device", "cuda"])
