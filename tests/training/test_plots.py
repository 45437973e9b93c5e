import numpy as np

from msa_toolkit.training.plots import confusion_acc7, write_run_plots


def test_confusion_acc7_counts():
    cm = confusion_acc7(np.array([-3.4, 0.4, 0.6, 2.2]), np.array([-2.6, 0.0, 1.0, 3.0]))
    assert cm.shape == (7, 7) and cm.sum() == 4
    assert cm[0, 0] == 1          # true -3 (rounded -2.6), predicted -3 (clipped -3.4)
    assert cm[3, 3] == 1          # true 0, predicted 0
    assert cm[4, 4] == 1          # true 1, predicted round(0.6) = 1
    assert cm[6, 5] == 1          # true 3, predicted 2
    assert np.trace(cm) == 3


def test_write_run_plots(tmp_path):
    history = [{"epoch": e, "train": {"a": 1.0 / e, "total": 2.0 / e}, "valid": {"loss": 1.5 / e, "mae": 1.0}}
               for e in (1, 2, 3)]
    paths = write_run_plots(tmp_path, history, np.array([0.1, -1.0, 2.0]), np.array([0.0, -1.5, 2.5]))
    assert sorted(p.name for p in paths) == ["confusion_acc7.png", "loss_curves.png", "scatter_test.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert write_run_plots(tmp_path, [], None, None) == []


def test_loss_figure_shows_validation_metrics_with_whole_epochs_and_mmsa_names():
    import matplotlib.pyplot as plt

    from msa_toolkit.training.plots import loss_figure

    history = [{"epoch": e, "train": {"total": 2.0 / e}, "valid": {"loss": 1.5 / e, "mae": 1.0 / e,
                                                                 "acc2_non0": 0.5 + e / 10, "corr": None}}
               for e in range(1, 4)]
    for mmsa, want in ((False, {"mae", "acc2_non0", "corr"}), (True, {"MAE", "Non0_acc_2", "Corr"})):
        fig = loss_figure(history, mmsa_names=mmsa)
        loss_ax, metric_ax = fig.axes[:2]
        assert metric_ax.get_title() == "validation metrics" and metric_ax.get_xlabel() == "epoch"
        assert {t.get_text() for t in metric_ax.get_legend().get_texts()} == want
        line = next(ln for ln in metric_ax.get_lines() if ln.get_label() in ("mae", "MAE"))
        assert list(line.get_ydata()) == [1.0 / e for e in range(1, 4)]
        fig.canvas.draw()
        for ax in (loss_ax, metric_ax):  # whole epochs only (matplotlib alone would tick 1.25, 1.5, ...)
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
        plt.close(fig)


def test_training_plots_follow_the_runs_mmsa_names(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from msa_toolkit.data.synthetic import make_synthetic_dataset
    from msa_toolkit.training import plots
    from msa_toolkit.training.api import train

    seen = []

    def spy(history, path, mmsa_names=False):
        fig = plots.loss_figure(history, mmsa_names)
        seen.append({t.get_text() for t in fig.axes[1].get_legend().get_texts()})
        plt.close(fig)
        return path

    monkeypatch.setattr(plots, "plot_loss_curves", spy)
    make_synthetic_dataset(tmp_path / "ds", n_train=16, n_valid=8, n_test=8, dims=(8, 4, 4), lengths=(6, 8, 8))
    train("late_fusion", tmp_path / "ds", tmp_path / "run", preset="tiny",
          overrides={"trainer.epochs": 2, "trainer.progress": False, "trainer.device": "cpu",
                     "trainer.mmsa_names": True})
    assert len(seen) == 1 and "MAE" in seen[0] and "Non0_acc_2" in seen[0] and "mae" not in seen[0]
