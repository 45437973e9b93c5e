"""`msa benchmark` end to end: two tiny models x two seeds, a failing run as a row, resume skips finished runs."""

import csv
import json

import pytest
from typer.testing import CliRunner

from msa_toolkit.cli.main import app
from msa_toolkit.training.benchmark import BEST_TEST_KEY, aggregate, markdown

runner = CliRunner()


@pytest.fixture(scope="module")
def bench_ds(tmp_path_factory):
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    path = tmp_path_factory.mktemp("bench") / "ds"
    make_synthetic_dataset(path, n_train=24, n_valid=8, n_test=8, dims=(8, 4, 4), lengths=(6, 8, 8), seed=0)
    return path


def _bench(ds, out, *extra):
    return runner.invoke(app, ["benchmark", "--models", "text_only,late_fusion,tfn", "--data", str(ds), "-o",
                               str(out), "--seeds", "1,2", "--preset", "tiny", "--epochs", "2", "--device", "cpu",
                               "--set", "trainer.batch_size=8", "--set", "trainer.plots=false",
                               "--set", "tfn:model.no_such_field=1", "--mmsa-names", "--percent", *extra])


def test_benchmark_end_to_end_resume_and_failed_row(bench_ds, tmp_path):
    out = tmp_path / "bench"
    r = _bench(bench_ds, out)
    assert r.exit_code == 0, (r.output, r.exception)
    assert "4 of 6 runs finished" in r.output
    for f in ("runs.csv", "results.csv", "results.json", "results.md", "results.png"):
        assert (out / f).is_file(), f
    runs = list(csv.DictReader((out / "runs.csv").open()))
    assert [(x["model"], x["seed"], x["status"]) for x in runs] == [
        ("text_only", "1", "ok"), ("text_only", "2", "ok"), ("late_fusion", "1", "ok"), ("late_fusion", "2", "ok"),
        ("tfn", "1", "failed"), ("tfn", "2", "failed")]
    assert "no_such_field" in runs[-1]["error"] and int(runs[0]["params"]) > 0
    assert float(runs[0]["seconds_per_epoch"]) > 0 and runs[0]["device"] == "cpu"
    doc = json.loads((out / "results.json").read_text())
    t = doc["table"]["text_only"]
    assert t["ok"] == 2 and t["test"]["mae"]["n"] == 2 and t["test"]["mae"]["std"] >= 0
    assert doc["table"]["tfn"]["ok"] == 0 and doc["table"]["tfn"]["errors"]
    md = (out / "results.md").read_text()
    assert "chosen on valid" in md and "Non0_acc_2 %" in md and "## Failed runs" in md
    assert "| tfn | toolkit | 0/2 |" in md
    header = next(csv.reader((out / "results.csv").open()))
    assert "test_Non0_acc_2_mean" in header and "test_MAE_std" in header
    # re-running skips the finished runs (their directories are not touched) and retries the failed ones
    stamp = (out / "runs" / "text_only" / "seed_1" / "metrics.json").stat().st_mtime_ns
    r = _bench(bench_ds, out)
    assert r.exit_code == 0, (r.output, r.exception)
    assert (out / "runs" / "text_only" / "seed_1" / "metrics.json").stat().st_mtime_ns == stamp
    again = json.loads((out / "results.json").read_text())
    assert again["runs"][0]["resumed"] == "skipped (finished)"
    assert again["table"]["text_only"]["test"] == t["test"]


def test_unknown_model_is_one_line_error(bench_ds, tmp_path):
    r = runner.invoke(app, ["benchmark", "--models", "nope", "--data", str(bench_ds), "-o", str(tmp_path / "b")])
    assert r.exit_code != 0 and "unknown model" in (r.output + str(r.exception))


def test_markdown_labels_the_test_selected_table():
    rows = [{"model": "m", "seed": s, "recipe": "reference", "preset": "-", "status": "ok", "error": "",
             "params": 10, "seconds_per_epoch": 1.0, "device": "cpu", "epochs_run": 3,
             "valid": {"mae": 1.0}, "test": {"mae": 1.0 + s / 10, "acc2_non0": 0.5},
             BEST_TEST_KEY: {"mae": 0.9, "acc2_non0": 0.6}} for s in (1, 2)]
    table = aggregate(rows)
    assert table["m"]["test"]["mae"]["mean"] == pytest.approx(1.15)
    assert table["m"]["test"]["mae"]["std"] == pytest.approx(0.0707107, rel=1e-4)
    md = markdown(table, ("acc2_non0", "mae"), percent=True, paper={"m": {"acc2": 86.0, "mae": 0.7, "source": "x"}})
    main, labelled = md.index("chosen on valid"), md.index("best TEST epoch")
    assert main < labelled and "60.00 ± 0.00" in md[labelled:] and "Published CMU-MOSI" in md


def test_one_seed_shows_no_spread(tmp_path):
    from msa_toolkit.training.benchmark import BenchmarkResult, write_results

    rows = [{"model": "m", "seed": 1, "recipe": "toolkit", "preset": "-", "status": "ok", "error": "",
             "params": 10, "seconds_per_epoch": 1.0, "device": "cpu", "epochs_run": 3, "data": "",
             "valid": {"mae": 1.0}, "test": {"mae": 0.9, "acc2_non0": 0.5}}]
    table = aggregate(rows)
    assert table["m"]["test"]["mae"] == {"mean": 0.9, "std": None, "n": 1}
    md = markdown(table, ("acc2_non0", "mae"))
    assert "0.900 (n=1)" in md and "± 0.000" not in md
    write_results(BenchmarkResult(tmp_path, rows, table), plot=False)
    row = next(csv.DictReader((tmp_path / "results.csv").open()))
    assert row["test_mae_mean"] == "0.9" and row["test_mae_std"] == ""
    assert json.loads((tmp_path / "results.json").read_text())["table"]["m"]["test"]["mae"]["std"] is None


@pytest.mark.parametrize("models, seeds", [("text_only", "1,1"), ("text_only,text_only", "1")])
def test_repeated_seed_or_model_is_refused(bench_ds, tmp_path, models, seeds):
    """A repeat would read the same run back and count it twice (n=2, std 0)."""
    r = runner.invoke(app, ["benchmark", "--models", models, "--data", str(bench_ds), "-o", str(tmp_path / "b"),
                            "--seeds", seeds, "--preset", "tiny", "--epochs", "1"])
    assert r.exit_code != 0 and "each one once" in str(r.exception)
    assert not (tmp_path / "b" / "results.json").exists()


def _one(ds, out, models="text_only", epochs="2"):
    return runner.invoke(app, ["benchmark", "--models", models, "--data", str(ds), "-o", str(out), "--seeds", "1",
                               "--preset", "tiny", "--epochs", epochs, "--device", "cpu",
                               "--set", "trainer.batch_size=8", "--set", "trainer.plots=false"])


def _runs(out):
    return {(r["model"], r["seed"]): r for r in json.loads((out / "results.json").read_text())["runs"]}


def test_a_finished_run_is_reused_only_when_its_fingerprint_matches(bench_ds, tmp_path):
    """Issue 31: re-running with --epochs 3 printed the 2-epoch numbers, and another dataset the first one's."""
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    out = tmp_path / "bench"
    assert _one(bench_ds, out).exit_code == 0
    first = _runs(out)[("text_only", 1)]
    assert first["epochs_run"] == 2 and first["dataset_id"] and first["fingerprint"]
    res = _one(bench_ds, out)  # the same command: read back, and said
    assert res.exit_code == 0 and _runs(out)[("text_only", 1)]["resumed"] == "skipped (finished)"
    assert "1 of 1 runs finished (1 read back: finished before, same fingerprint)" in res.output
    res = _one(bench_ds, out, epochs="3")  # other settings: trained again, and said so
    assert res.exit_code == 0 and "trainer.epochs: 2 -> 3" in res.output and "training it again" in res.output
    assert _runs(out)[("text_only", 1)]["epochs_run"] == 3
    other = make_synthetic_dataset(tmp_path / "other", n_train=24, n_valid=8, n_test=8, dims=(8, 4, 4),
                                   lengths=(6, 8, 8), seed=5)
    res = _one(other.path, out, epochs="3")  # another dataset: trained again; the table names the dataset
    assert res.exit_code == 0 and "dataset (content id)" in res.output
    row = _runs(out)[("text_only", 1)]
    assert row["dataset_id"] == other.content_id != first["dataset_id"]
    assert f"content id {other.content_id[:12]}" in (out / "results.md").read_text()


def test_results_keep_other_models_of_the_same_protocol_only(bench_ds, tmp_path):
    """Each command rewrote the tables with only its own models; now finished runs of the same data and
    protocol stay, and those of another protocol do not."""
    out = tmp_path / "bench"
    assert _one(bench_ds, out, models="text_only").exit_code == 0
    assert _one(bench_ds, out, models="late_fusion").exit_code == 0
    assert set(_runs(out)) == {("text_only", 1), ("late_fusion", 1)}
    table = (out / "results.md").read_text()
    assert "| text_only |" in table and "| late_fusion |" in table
    assert _one(bench_ds, out, models="late_fusion", epochs="1").exit_code == 0  # another protocol
    assert set(_runs(out)) == {("late_fusion", 1)}


# -- issue 32: the tables researchers publish, and significance against a baseline --------------

def test_wide_table_latex_and_significance_against_a_baseline(bench_ds, tmp_path):
    import numpy as np
    from scipy.stats import ttest_rel

    from msa_toolkit.training.benchmark import run_benchmark

    out = tmp_path / "sig"
    over = ["trainer.epochs=2", "trainer.device=cpu", "trainer.plots=false", "trainer.progress=false",
            "trainer.batch_size=8"]
    res = run_benchmark(["text_only", "late_fusion"], bench_ds, out, seeds=(1, 2), preset="tiny", overrides=over,
                        mmsa_names=True, plot=False, baseline="text_only")
    table = json.loads((out / "results.json").read_text())["table"]
    wide = list(csv.reader((out / "results_wide.csv").open()))
    assert wide[0][:2] == ["Model", "Non0_acc_2"] and "MAE" in wide[0] and "Has0_acc_2" in wide[0]
    assert [r[0] for r in wide[1:]] == ["text_only", "late_fusion"]
    mae = table["late_fusion"]["test"]["mae"]
    cell = wide[2][wide[0].index("MAE")]
    assert cell.startswith(f"{mae['mean']:.3f} ± {mae['std']:.3f}")
    tex = (out / "results.tex").read_text()
    assert all(k in tex for k in (r"\toprule", r"\midrule", r"\bottomrule", r"text\_only", r"Has0\_acc\_2",
                                  r"$\pm$"))
    assert "±" not in tex and "_only" not in tex.replace(r"\_only", "")
    # the paired t-test over seeds, as scipy gives it, and the bootstrap interval on the paired test predictions
    sig = {(r["model"], r["metric"]): r for r in csv.DictReader((out / "significance.csv").open())}
    assert {m for m, _ in sig} == {"late_fusion"} and ("late_fusion", "MAE") in sig
    runs = {(r["model"], r["seed"]): r for r in res.runs}
    for metric, name in (("mae", "MAE"), ("acc2_non0", "Non0_acc_2")):
        row = sig[("late_fusion", name)]
        a = [runs[("late_fusion", s)]["test"][metric] for s in (1, 2)]
        b = [runs[("text_only", s)]["test"][metric] for s in (1, 2)]
        want = ttest_rel(a, b)
        assert row["n_seeds"] == "2" and row["baseline"] == "text_only"
        assert float(row["p"]) == pytest.approx(want.pvalue) and float(row["t"]) == pytest.approx(want.statistic)
        per = {}
        for model in ("late_fusion", "text_only"):
            vals = []
            for s in (1, 2):
                preds = {r["id"]: (float(r["label"]), float(r["prediction"]))
                         for r in csv.DictReader((out / "runs" / model / f"seed_{s}" / "predictions_test.csv").open())}
                vals.append({i: abs(p - y) if metric == "mae" else float((p > 0) == (y > 0))
                             for i, (y, p) in preds.items() if metric == "mae" or y != 0})
            per[model] = {i: np.mean([v[i] for v in vals]) for i in vals[0]}
        d = np.array([per["late_fusion"][i] - per["text_only"][i] for i in per["text_only"]])
        assert float(row["diff"]) == pytest.approx(d.mean(), abs=1e-9)
        assert float(row["diff"]) == pytest.approx(np.mean(a) - np.mean(b), abs=1e-4)  # = the difference of means
        boots = d[np.random.default_rng(0).integers(0, d.size, (1000, d.size))].mean(axis=1)
        assert [float(row["ci_low"]), float(row["ci_high"])] == pytest.approx(list(np.percentile(boots, [2.5, 97.5])))
        marked = want.pvalue < 0.05 and (float(row["ci_low"]) > 0 or float(row["ci_high"]) < 0)
        assert row["marked"] == str(int(marked))
        assert cell.endswith(" †") == (marked and metric == "mae") or metric != "mae"
    md = (out / "results.md").read_text()
    assert "Against the baseline text_only" in md and "| late_fusion | MAE | 2 |" in md


def test_significance_with_one_seed_says_n_a_and_a_foreign_baseline_is_refused(bench_ds, tmp_path):
    from msa_toolkit.errors import MSAError
    from msa_toolkit.training.benchmark import run_benchmark

    over = ["trainer.epochs=1", "trainer.device=cpu", "trainer.plots=false", "trainer.progress=false"]
    with pytest.raises(MSAError, match="--baseline tfn is not one of --models"):
        run_benchmark(["text_only"], bench_ds, tmp_path / "x", seeds=(1,), preset="tiny", overrides=over,
                      baseline="tfn")
    assert not (tmp_path / "x").exists()
    from msa_toolkit.cli.main import main

    assert main(["benchmark", "--models", "text_only", "--data", str(bench_ds), "-o", str(tmp_path / "x"),
                 "--baseline", "tfn"]) == 2 and not (tmp_path / "x").exists()
    run_benchmark(["text_only", "late_fusion"], bench_ds, tmp_path / "one", seeds=(1,), preset="tiny",
                  overrides=over, plot=False, baseline="text_only")
    row = next(r for r in csv.DictReader((tmp_path / "one" / "significance.csv").open()) if r["metric"] == "mae")
    assert row["n_seeds"] == "1" and row["p"] == "" and row["t"] == "" and row["marked"] == "0"
    assert row["diff"] != ""  # the bootstrap needs only the test predictions of one seed
    assert "| late_fusion | mae | 1 | n/a | n/a |" in (tmp_path / "one" / "results.md").read_text()


def test_a_significant_difference_is_marked_in_every_table(tmp_path):
    from msa_toolkit.training.benchmark import aggregate, write_results, BenchmarkResult

    labels = [-2.0, -1.0, 1.0, 2.0, 0.5, -0.5, 1.5, -1.5]
    rows = []
    for model, err in (("base", 1.0), ("good", 0.2)):
        for seed in (1, 2, 3):
            run = tmp_path / model / str(seed)
            run.mkdir(parents=True)
            e = err + 0.01 * seed  # the better model wins on every seed and sample
            preds = [y + (e if i % 2 else -e) for i, y in enumerate(labels)]
            (run / "predictions_test.csv").write_text("id,label,prediction\n" + "".join(
                f"s{i},{y},{p}\n" for i, (y, p) in enumerate(zip(labels, preds))))
            rows.append({"model": model, "seed": seed, "recipe": "toolkit", "preset": "-", "status": "ok",
                         "error": "", "params": 1, "seconds_per_epoch": 1.0, "device": "cpu", "epochs_run": 1,
                         "run_dir": str(run), "valid": {}, "test": {"mae": e + (0.001 * seed if model == "good" else 0),
                                                                    "acc2_non0": 1.0}})
    write_results(BenchmarkResult(tmp_path, rows, aggregate(rows)), plot=False, baseline="base")
    sig = {r["metric"]: r for r in csv.DictReader((tmp_path / "significance.csv").open())}
    assert sig["mae"]["marked"] == "1" and float(sig["mae"]["ci_high"]) < 0
    assert sig["acc2_non0"]["p"] == "" and sig["acc2_non0"]["marked"] == "0"  # no difference at all: no test
    wide = list(csv.reader((tmp_path / "results_wide.csv").open()))
    assert wide[2][0] == "good" and wide[2][wide[0].index("mae")].endswith(" †")
    assert not wide[1][wide[0].index("mae")].endswith("†")
    assert r"$^\dagger$" in (tmp_path / "results.tex").read_text()
    assert "p $<$ 0.05" in (tmp_path / "results.tex").read_text()


def test_results_csv_has_test_selected_columns_only_when_a_recipe_recorded_them(tmp_path):
    from msa_toolkit.training.benchmark import BenchmarkResult, write_results

    def row(model, seed, best_test):
        return {"model": model, "seed": seed, "recipe": "toolkit", "preset": "-", "status": "ok", "error": "",
                "params": 1, "seconds_per_epoch": 1.0, "device": "cpu", "epochs_run": 1, "valid": {},
                "test": {"mae": 1.0, "acc2_non0": 0.5}, BEST_TEST_KEY: best_test}

    for rows, want in (([row("a", 1, {}), row("b", 1, {})], False),
                       ([row("a", 1, {}), row("b", 1, {"mae": 0.9, "acc2_non0": 0.6})], True)):
        out = tmp_path / str(want)
        out.mkdir()
        write_results(BenchmarkResult(out, rows, aggregate(rows)), plot=False)
        for name in ("results.csv", "runs.csv"):
            header = next(csv.reader((out / name).open()))
            assert any(h.startswith("test_mae") for h in header)
            assert any(h.startswith(f"{BEST_TEST_KEY}_") for h in header) == want, (name, header)


def test_reference_benchmark_refuses_frozen_text_before_any_run(bench_ds, tmp_path):
    """DLF's and ALMT's reference recipes fine-tune BERT: without an encoder or --allow-frozen-text the benchmark
    stops before training anything (text_only, listed first, is not trained either)."""
    out = tmp_path / "bench"
    r = runner.invoke(app, ["benchmark", "--models", "text_only,dlf,almt", "--data", str(bench_ds), "-o", str(out),
                            "--seeds", "1", "--preset", "tiny", "--epochs", "1", "--device", "cpu",
                            "--recipe", "reference"])
    assert r.exit_code != 0
    message = " ".join(r.output.split()) + str(r.exception)
    assert "dlf, almt" in message and "--allow-frozen-text" in message
    assert not (out / "runs").exists()


def test_a_failed_model_does_not_list_its_data_folder_again_without_a_content_id():
    ok = {"model": "m", "seed": 1, "recipe": "toolkit", "preset": "-", "status": "ok", "error": "", "params": 10,
          "seconds_per_epoch": 1.0, "device": "cpu", "epochs_run": 3, "data": "/d", "dataset_id": "abcdef0123456789",
          "valid": {"mae": 1.0}, "test": {"mae": 0.9, "acc2_non0": 0.5}}
    failed = {"model": "f", "seed": 1, "recipe": "toolkit", "preset": "-", "status": "failed",
              "error": "MSAError: refused", "data": "/d"}
    md = markdown(aggregate([ok, failed]), ("acc2_non0", "mae"))
    assert "Data: /d (content id abcdef012345)\n" in md and "not recorded" not in md
    alone = markdown(aggregate([failed]), ("acc2_non0", "mae"))  # no other model read it: said so
    assert "/d (content id not recorded)" in alone
