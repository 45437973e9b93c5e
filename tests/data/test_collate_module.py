"""Collation to Batch, DataModule loaders (incl. DistributedSampler) and the synthetic dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msa_toolkit.data.batch import Batch
from msa_toolkit.data.collate import collate_samples
from msa_toolkit.data.module import DataModule
from msa_toolkit.data.native import Sample
from msa_toolkit.data.synthetic import make_synthetic_dataset


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "ds", n_train=40, n_valid=10, n_test=12,
                                  with_tokens=True)


def test_collate_shapes_masks_truncation():
    s1 = Sample("a", 1.0, features={"text": np.ones((3, 4), np.float32), "vision": np.ones((5, 2), np.float32)},
                masks={"vision": np.array([1, 0, 1, 1, 1], bool)})
    s2 = Sample("b", -1.0, features={"text": 2 * np.ones((6, 4), np.float32)})
    b = collate_samples([s1, s2], {"text": 4, "audio": 0, "vision": 2}, max_lengths={"text": 4})
    assert isinstance(b, Batch)
    assert b.text.shape == (2, 4, 4) and b.text_mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    # absent audio: zeros [B, 1, 1] + all-False mask
    assert b.audio.shape == (2, 1, 1) and not b.audio_mask.any() and not b.audio.any()
    # stored vision mask combined with padding; masked step zeroed; second sample lacks vision
    assert b.vision_mask.tolist() == [[1, 0, 1, 1, 1], [0, 0, 0, 0, 0]]
    assert b.vision[0, 1].abs().sum() == 0 and b.vision[1].abs().sum() == 0
    assert b.label.tolist() == [1.0, -1.0] and b.ids == ["a", "b"] and b.text_tokens is None


def test_collate_normalisation_and_start_truncation():
    s = Sample("a", 0.0, features={"text": np.arange(10, dtype=np.float32).reshape(5, 2)})
    stats = {"text": (np.array([1.0, 2.0], np.float32), np.array([2.0, 4.0], np.float32))}
    b = collate_samples([s], {"text": 2}, {"text": 2}, stats, truncate="start")
    np.testing.assert_allclose(b.text[0].numpy(), [[(6 - 1) / 2, (7 - 2) / 4], [(8 - 1) / 2, (9 - 2) / 4]])


def test_collate_tokens_padded_to_text_length():
    mk = lambda n, i: Sample(i, 0.0, features={"text": np.ones((n, 3), np.float32)},  # noqa: E731
                             arrays={"text.input_ids": np.arange(1, n + 1)})
    b = collate_samples([mk(2, "x"), mk(4, "y")], {"text": 3})
    assert b.text_tokens.dtype == torch.long and b.text_tokens.tolist() == [[1, 2, 0, 0], [1, 2, 3, 4]]


def test_datamodule_batches(synth):
    dm = DataModule(synth, batch_size=8)
    assert dm.split_names == ("train", "valid", "test")
    assert dm.dims == {"text": 16, "audio": 8, "vision": 8}
    assert dm.max_lengths == {"text": 12, "audio": 20, "vision": 16}
    batches = list(dm.train_loader())
    assert sum(b.size for b in batches) == 40
    b = batches[0]
    assert b.text.shape[0] == 8 and b.text_tokens.shape == b.text_mask.shape
    # normalised with train stats: valid steps ~ zero mean, unit std over the train split
    allv = torch.cat([x.audio[x.audio_mask] for x in batches])
    assert abs(float(allv.mean())) < 0.05 and abs(float(allv.std()) - 1) < 0.05
    ids = [i for x in dm.loader("dev") for i in x.ids]
    assert ids == synth.split("valid").ids  # in order, alias works
    # shuffled train order differs between epochs, same seed reproduces
    loader = dm.train_loader()
    e1 = [i for x in loader for i in x.ids]
    e2 = [i for x in loader for i in x.ids]
    assert e1 != e2 and sorted(e1) == sorted(e2)
    e1b = [i for x in DataModule(synth, batch_size=8).train_loader() for i in x.ids]
    assert e1b == [i for x in batches for i in x.ids]


def test_datamodule_max_lengths_override_and_no_normalise(synth):
    dm = DataModule(synth, batch_size=4, max_lengths={"audio": 5}, normalize=False)
    b = next(iter(dm.loader("test")))
    assert b.audio.shape[1] == 5 and dm.max_lengths["audio"] == 5
    raw = synth.split("test")[0].features["audio"][:5]
    np.testing.assert_allclose(b.audio[0, : raw.shape[0]].numpy(), raw)


def test_distributed_sampler_partitions(synth):
    dm = DataModule(synth, batch_size=4, seed=3)
    parts = []
    for rank in (0, 1):
        loader = dm.train_loader(distributed=True, num_replicas=2, rank=rank)
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
        loader.sampler.set_epoch(0)
        parts.append([i for b in loader for i in b.ids])
    assert len(parts[0]) == len(parts[1]) == 20
    assert not set(parts[0]) & set(parts[1])
    assert set(parts[0]) | set(parts[1]) == set(synth.split("train").ids)


def test_text_only_synthetic_absent_modalities(tmp_path):
    ds = make_synthetic_dataset(tmp_path / "t", n_train=8, n_valid=2, n_test=2, modalities=("text",))
    dm = DataModule(ds, batch_size=4)
    assert dm.dims == {"text": 16, "audio": 1, "vision": 1}
    b = next(iter(dm.train_loader()))
    assert b.audio.shape == (4, 1, 1) and b.vision.shape == (4, 1, 1)
    assert not b.audio_mask.any() and not b.vision_mask.any()
    assert ds.spec.origin == {"source": "synthetic"} and ds.spec.modalities == ("text",)


def test_synthetic_label_needs_all_modalities(synth, tmp_path):
    ds = make_synthetic_dataset(tmp_path / "big", n_train=600, n_valid=0, n_test=0, noise=0.3)
    tr = ds.split("train")
    X = {m: np.stack([s.features[m].mean(0) for s in tr]) for m in ("text", "audio", "vision")}
    y = tr.labels

    def r2(feats):
        A = np.hstack([*feats, np.ones((len(y), 1))])
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        return 1 - ((A @ coef - y) ** 2).mean() / y.var()

    text_only, fused = r2([X["text"]]), r2([X["text"], X["audio"], X["vision"]])
    assert fused > text_only + 0.2, (text_only, fused)


def test_worker_processes(synth):
    dm = DataModule(synth, batch_size=16, num_workers=1)
    ids = [i for b in dm.loader("test") for i in b.ids]
    assert ids == synth.split("test").ids


def test_tokens_not_aligned_with_word_pooled_text():
    s = Sample("w", 0.0, features={"text": np.ones((2, 3), np.float32)}, arrays={"text.input_ids": np.arange(1, 6)})
    b = collate_samples([s], {"text": 3}, {"text": 4})
    assert b.text.shape[1] == 2 and b.text_tokens.tolist() == [[1, 2, 3, 4]]


def test_distributed_without_process_group_is_a_clear_error(synth):
    with pytest.raises(ValueError, match="torchrun"):
        DataModule(synth, batch_size=4).train_loader(distributed=True)


def test_bucket_batch_sampler_groups_similar_lengths_and_covers_every_sample():
    from msa_toolkit.data.module import BucketBatchSampler

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 500, size=1000)
    g = torch.Generator().manual_seed(5)
    bs = BucketBatchSampler(torch.utils.data.RandomSampler(range(1000), generator=g), lengths, 32,
                            pool_batches=8, generator=g)
    epochs = [list(bs), list(bs)]
    for batches in epochs:
        assert len(batches) == len(bs) == 32
        assert sorted(i for b in batches for i in b) == list(range(1000))
        spread = np.mean([np.ptp(lengths[b]) for b in batches])
        assert spread < 0.25 * np.ptp(lengths)  # a random batch spans nearly the whole range
    assert epochs[0] != epochs[1]  # reshuffled every epoch
    g2 = torch.Generator().manual_seed(5)
    again = BucketBatchSampler(torch.utils.data.RandomSampler(range(1000), generator=g2), lengths, 32,
                               pool_batches=8, generator=g2)
    assert list(again) == epochs[0]  # deterministic under the seed
    dropped = BucketBatchSampler(range(1000), lengths, 32, drop_last=True, seed=1)
    assert len(list(dropped)) == len(dropped) == 31 and all(len(b) == 32 for b in dropped)


def test_bucketed_train_loader_pads_to_the_batch_maximum(synth):
    dm = DataModule(synth, batch_size=8, seed=2)
    loader = dm.train_loader(bucket_by_length=True)
    ids = [i for b in loader for i in b.ids]
    assert sorted(ids) == sorted(synth.split("train").ids)
    for b in loader:
        assert b.audio.shape[1] == int(b.audio_mask.sum(1).max())  # no step beyond the batch's longest
    again = [i for b in DataModule(synth, batch_size=8, seed=2).train_loader(bucket_by_length=True) for i in b.ids]
    assert again == ids


def test_bucketed_distributed_loader_partitions(synth):
    dm = DataModule(synth, batch_size=4, seed=3)
    parts = []
    for rank in (0, 1):
        loader = dm.train_loader(distributed=True, num_replicas=2, rank=rank, bucket_by_length=True)
        loader.batch_sampler.set_epoch(1)
        assert loader.batch_sampler.sampler.epoch == 1
        parts.append([i for b in loader for i in b.ids])
    assert len(parts[0]) == len(parts[1]) == 20
    assert not set(parts[0]) & set(parts[1])
    assert set(parts[0]) | set(parts[1]) == set(synth.split("train").ids)
