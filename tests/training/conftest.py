"""Shared fixtures for training tests: one tiny synthetic native dataset per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_ds(tmp_path_factory):
    """A small synthetic dataset (48/16/16 samples, dims 8/4/4, short sequences)."""
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    path = tmp_path_factory.mktemp("data") / "tiny"
    make_synthetic_dataset(path, n_train=48, n_valid=16, n_test=16, dims=(8, 4, 4), lengths=(6, 8, 8), seed=0)
    return path


@pytest.fixture(scope="session")
def tiny_mt_ds(tmp_path_factory):
    """``tiny_ds`` with unimodal labels label_T/A/V (for multi-task models)."""
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    path = tmp_path_factory.mktemp("data") / "tiny_mt"
    make_synthetic_dataset(path, n_train=48, n_valid=16, n_test=16, dims=(8, 4, 4), lengths=(6, 8, 8), seed=0,
                           unimodal_labels=True)
    return path


@pytest.fixture
def fast():
    """Trainer overrides that keep tests fast and quiet."""
    return {"trainer.progress": False, "trainer.plots": False, "trainer.device": "cpu", "trainer.batch_size": 16}
