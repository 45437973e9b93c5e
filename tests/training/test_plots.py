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
