"""Robustness protocols (issue 33): deterministic masks shared by every model, rate 0 = evaluate, protocol A's
boundary tokens, protocol B's kept modality, every registered model under every protocol, and robustness
training that pays off."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from msa_toolkit.data.batch import Batch, synthetic_batch
from msa_toolkit.data.missing import (MissingAugment, add_noise, drop_steps, plan_removal, remove_modalities,
                                      sample_rng)
from msa_toolkit.models import get_entry, list_models
from msa_toolkit.spec import MODALITIES

UNK = 100


def _rows(batch: Batch, idx: list[int]) -> Batch:
    """The samples ``idx`` of a batch, as another batch (another composition and order)."""
    kw = {m: getattr(batch, m)[idx] for m in ("text", "text_mask", "audio", "audio_mask", "vision", "vision_mask",
                                              "label")}
    tokens = batch.text_tokens[idx] if batch.text_tokens is not None else None
    return Batch(**kw, text_tokens=tokens, ids=[batch.ids[i] for i in idx])


def test_masks_depend_on_the_seed_and_ids_only():
    b = synthetic_batch(6, with_tokens=True, seed=3)
    a1 = drop_steps(b, 0.5, seed=7, unk_id=UNK)
    a2 = drop_steps(b, 0.5, seed=7, unk_id=UNK)
    other = drop_steps(b, 0.5, seed=8, unk_id=UNK)
    for m in MODALITIES:
        assert torch.equal(getattr(a1, m), getattr(a2, m))
    assert not all(torch.equal(getattr(a1, m), getattr(other, m)) for m in MODALITIES)
    # the same sample in another batch, another position, a shorter padding: the same drops
    idx = [4, 1]
    sub = drop_steps(_rows(b, idx), 0.5, seed=7, unk_id=UNK)
    for m in MODALITIES:
        L = getattr(sub, m).shape[1]
        assert torch.equal(getattr(sub, m), getattr(a1, m)[idx][:, :L])
    assert torch.equal(sub.text_tokens, a1.text_tokens[idx])
    # nested: a step dropped at 0.3 is dropped at 0.6
    lo, hi = drop_steps(b, 0.3, seed=7), drop_steps(b, 0.6, seed=7)
    for m in MODALITIES:
        dropped_lo = (getattr(lo, m) == 0).all(-1) & getattr(b, f"{m}_mask")
        assert ((getattr(hi, m) == 0).all(-1)[dropped_lo]).all()
    # masks are unchanged (MMSA keeps the attention mask)
    assert all(torch.equal(getattr(a1, f"{m}_mask"), getattr(b, f"{m}_mask")) for m in MODALITIES)


def test_rate_one_keeps_only_the_boundary_tokens():
    b = synthetic_batch(5, with_tokens=True, seed=1)
    out = drop_steps(b, 1.0, seed=1111, unk_id=UNK)
    for i in range(b.size):
        valid = torch.nonzero(b.text_mask[i]).squeeze(1)
        first, last = int(valid[0]), int(valid[-1])
        kept = [j for j in valid.tolist() if out.text_tokens[i, j] != UNK]
        assert kept == sorted({first, last})
        assert torch.equal(out.text_tokens[i, [first, last]], b.text_tokens[i, [first, last]])
        zero_rows = [j for j in valid.tolist() if (out.text[i, j] == 0).all()]
        assert zero_rows == [j for j in valid.tolist() if j not in (first, last)]
        assert (out.text_tokens[i, ~b.text_mask[i]] == b.text_tokens[i, ~b.text_mask[i]]).all()
    assert (out.audio == 0).all() and (out.vision == 0).all()
    # feature-only text (no token ids): nothing is a boundary token, every row is dropped
    plain = drop_steps(replace(b, text_tokens=None), 1.0)
    assert (plain.text == 0).all()
    # rate 0 is the identity
    assert drop_steps(b, 0.0) is b


def test_protocol_b_keeps_a_modality_and_removes_the_fraction():
    ids = [f"clip_{i}" for i in range(200)]
    previous: dict[str, frozenset[str]] = {}
    for rate in [0.1 * k for k in range(11)]:
        plan, eff = plan_removal(ids, MODALITIES, rate, seed=1111)
        assert all(len(v) < len(MODALITIES) for v in plan.values())
        removed = sum(len(v) for v in plan.values())
        assert removed == min(round(rate * 600), 400) and eff == pytest.approx(removed / 600)
        assert all(previous.get(k, frozenset()) <= plan.get(k, frozenset()) for k in ids)  # nested
        previous = plan
    # independent of the order of the ids, dependent on the seed
    assert plan_removal(ids[::-1], MODALITIES, 0.4)[0] == plan_removal(ids, MODALITIES, 0.4)[0]
    assert plan_removal(ids, MODALITIES, 0.4, seed=1)[0] != plan_removal(ids, MODALITIES, 0.4, seed=2)[0]
    # removal = the absent-modality contract for that sample (masked), not zeros under a valid mask
    b = synthetic_batch(4, with_tokens=True)
    out = remove_modalities(b, {"s1": frozenset({"audio", "text"})})
    assert not out.present("audio")[1] and not out.present("text")[1] and out.present("vision")[1]
    assert (out.audio[1] == 0).all() and (out.text_tokens[1] == 0).all()
    assert torch.equal(out.audio[0], b.audio[0]) and out.present("audio")[0]


def test_noise_is_gaussian_on_valid_audio_vision_steps_only():
    b = synthetic_batch(8, lengths=(4, 50, 40), dims=(4, 20, 20), seed=2)
    out = add_noise(b, 0.5, seed=3)
    assert torch.equal(out.text, b.text)
    for m in ("audio", "vision"):
        diff = (getattr(out, m) - getattr(b, m))[getattr(b, f"{m}_mask")]
        assert diff.std().item() == pytest.approx(0.5, rel=0.1)
        assert (getattr(out, m)[~getattr(b, f"{m}_mask")] == 0).all()
    assert torch.equal(add_noise(b, 0.5, seed=3).audio, out.audio)


def test_lnln_schedule_leaves_about_half_clean_and_redraws_each_epoch():
    ids = [f"u{i}" for i in range(400)]
    clean = [sample_rng(1, "lnln", i, 0).random(4)[0] < 0.5 for i in ids]
    assert 0.4 < np.mean(clean) < 0.6
    b = synthetic_batch(16, lengths=(30, 30, 30), seed=4)
    aug = MissingAugment(seed=1, schedule="lnln")
    e0, e1 = aug(b, 0), aug(b, 1)
    untouched = [all(torch.equal(getattr(e0, m)[i], getattr(b, m)[i]) for m in MODALITIES) for i in range(16)]
    assert 2 <= sum(untouched) <= 14
    assert not torch.equal(e0.audio, e1.audio)
    assert torch.equal(aug(b, 0).audio, e0.audio)


# -- on checkpoints ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two different models trained briefly on one tiny synthetic dataset (with token ids, and unimodal labels for
    the multi-task models)."""
    from msa_toolkit.data.synthetic import make_synthetic_dataset
    from msa_toolkit.training.api import train

    root = tmp_path_factory.mktemp("rob")
    make_synthetic_dataset(root / "ds", n_train=32, n_valid=16, n_test=24, dims=(8, 4, 4), lengths=(6, 8, 8),
                           seed=0, with_tokens=True, unimodal_labels=True)
    over = {"trainer.epochs": 1, "trainer.progress": False, "trainer.plots": False, "trainer.device": "cpu",
            "trainer.batch_size": 8}
    for name in ("late_fusion", "tfn"):
        train(name, root / "ds", root / name, preset="tiny", overrides=over)
    return root


def test_rate_zero_equals_evaluate_and_the_files_are_written(runs):
    from typer.testing import CliRunner

    from msa_toolkit.cli.main import app
    from msa_toolkit.training.api import evaluate

    ck = runs / "late_fusion" / "seed_1" / "best.safetensors"
    res = CliRunner().invoke(app, ["robustness", str(ck), "-d", str(runs / "ds"), "-o", str(runs / "out"),
                                   "--rates", "0,0.5,0.9", "--mask-seed", "1", "--mask-seed", "2", "-q",
                                   "--device", "cpu", "--json", str(runs / "r.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((runs / "out" / "robustness.json").read_text())
    assert doc == json.loads((runs / "r.json").read_text()) and doc["mask_seeds"] == [1, 2]
    plain = evaluate(ck, runs / "ds", device="cpu")
    assert set(doc["protocols"]) == {"A", "B", "noise"}
    for p, v in doc["protocols"].items():
        first = v["per_rate"][0]
        assert first["rate"] == 0.0 and first["metrics"] == dict(plain)
        assert v["per_rate"][1]["n"] == 2  # averaged over both mask seeds
        assert set(v["auilc"]) >= {"mae", "acc2_non0"}
        rates = [r["rate"] for r in v["per_rate"]]
        maes = [r["metrics"]["mae"] for r in v["per_rate"]]
        assert v["auilc"]["mae"] == pytest.approx(np.trapezoid(maes, rates))
        assert v["auilc_mean"]["mae"] == pytest.approx(v["auilc"]["mae"] / 0.9)
    assert doc["protocols"]["A"]["per_rate"][2]["metrics"] != dict(plain)
    assert (runs / "out" / "robustness.png").stat().st_size > 0
    assert "\nA,0.5,mae," in (runs / "out" / "robustness.csv").read_text()


def test_every_model_sees_the_same_perturbed_inputs(runs, monkeypatch):
    """Record what each model is fed under protocols A, B and noise: the same tensors for both models."""
    from msa_toolkit.training import trainer as T
    from msa_toolkit.training.robustness import robustness

    seen: dict[str, list[tuple]] = {}
    real = T.Trainer.predict

    def spy(self, split, drop=()):
        if not isinstance(split, str):
            batches = list(split)
            seen.setdefault(self.model.__class__.__name__, []).append(
                tuple((tuple(b.ids), b.text.sum().item(), b.audio.sum().item(), b.vision.sum().item(),
                       b.audio_mask.sum().item()) for b in batches))
            split = batches
        return real(self, split, drop)

    monkeypatch.setattr(T.Trainer, "predict", spy)
    for name in ("late_fusion", "tfn"):
        robustness(runs / name, runs / "ds", rates=[0.0, 0.4], device="cpu")
    a, b = seen.values()
    assert len(seen) == 2 and len(a) == 3 and a == b


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_every_protocol(name, tmp_path, runs):
    from msa_toolkit.training.api import train
    from msa_toolkit.training.robustness import robustness

    preset = "tiny" if "tiny" in get_entry(name).presets else None
    train(name, runs / "ds", tmp_path / "run", preset=preset,
          overrides={"trainer.epochs": 1, "trainer.limit_train_batches": 1, "trainer.progress": False,
                     "trainer.plots": False, "trainer.device": "cpu", "trainer.batch_size": 8})
    res = robustness(tmp_path / "run", runs / "ds", rates=[0.0, 0.7], device="cpu")
    for p in ("A", "B", "noise"):
        assert all(np.isfinite(r["metrics"]["mae"]) for r in res.protocols[p]["per_rate"]), p
    assert res.protocols["B"]["per_rate"][1]["effective_rate"] == pytest.approx(2 / 3)


def test_missing_rate_settings_enter_the_fingerprint_only_when_set(runs):
    from msa_toolkit.training.plan import plan_runs

    def fp(over):
        return plan_runs("late_fusion", runs / "ds", runs / "x", "tiny", None, over, [1], False, None).runs[0][3]

    plain = fp({})
    assert "missing_rate" not in plain["trainer"]  # runs made before these settings keep their fingerprint
    assert fp({"trainer.missing_rate": 0.3})["trainer"]["missing_rate"] == 0.3
    assert fp({"trainer.missing_schedule": "lnln"})["trainer"]["missing_schedule"] == "lnln"
    assert fp({"trainer.select_missing_rate": 0.5})["trainer"]["select_missing_rate"] == 0.5


def test_bad_robustness_settings_are_refused():
    from msa_toolkit.errors import MSAError
    from msa_toolkit.training.config import TrainConfig

    with pytest.raises(MSAError, match="missing_schedule"):
        TrainConfig(missing_schedule="sometimes")
    with pytest.raises(MSAError, match="missing_rate"):
        TrainConfig(missing_rate=1.5)
    with pytest.raises(MSAError, match="both set"):
        TrainConfig(missing_rate=0.2, missing_schedule="lnln")


# -- robustness training -------------------------------------------------------------------------

def test_training_batches_get_the_drops_and_valid_the_chosen_rate(runs, tmp_path, monkeypatch):
    """missing_rate drops frames of the batches the model trains on (not of the evaluation batches);
    select_missing_rate scores valid under protocol-A drops at that rate."""
    from msa_toolkit.models.baselines import LateFusion
    from msa_toolkit.training.api import train

    zero_rows: dict[bool, list[float]] = {True: [], False: []}
    real = LateFusion.forward

    def spy(self, batch):
        rows = (batch.audio == 0).all(-1) & batch.audio_mask
        zero_rows[self.training].append(float(rows.sum() / batch.audio_mask.sum()))
        return real(self, batch)

    monkeypatch.setattr(LateFusion, "forward", spy)
    over = {"trainer.epochs": 1, "trainer.progress": False, "trainer.plots": False, "trainer.device": "cpu",
            "trainer.batch_size": 8}
    train("late_fusion", runs / "ds", tmp_path / "aug", preset="tiny",
          overrides={**over, "trainer.missing_rate": 0.6})
    assert 0.4 < np.mean(zero_rows[True]) < 0.8 and max(zero_rows[False]) == 0.0
    clean = train("late_fusion", runs / "ds", tmp_path / "clean", preset="tiny", overrides=over)
    sel = train("late_fusion", runs / "ds", tmp_path / "sel", preset="tiny",
                overrides={**over, "trainer.select_missing_rate": 0.5})
    assert sel.runs[0].history[0]["valid"] != clean.runs[0].history[0]["valid"]
    assert sel.runs[0].history[0]["train"] == clean.runs[0].history[0]["train"]  # training itself untouched


#: a redundant set: every modality carries the label's latent, text clearly, audio and vision noisily, so a
#: model trained on clean data leans on text and one trained with drops learns to fall back on audio/vision
REDUNDANT_NOISE = {"text": 0.1, "audio": 0.7, "vision": 0.7}
REDUNDANT_DIMS = {"text": 8, "audio": 4, "vision": 4}


def _redundant_dataset(out, n_train: int = 512, n_eval: int = 256, seed: int = 0):
    from msa_toolkit.data.native import Sample, write_dataset
    from msa_toolkit.data.synthetic import synthetic_spec

    rng = np.random.default_rng(seed)
    dirs = {m: (lambda w: (w / np.linalg.norm(w)).astype(np.float32))(rng.standard_normal(d))
            for m, d in REDUNDANT_DIMS.items()}

    def gen(split, count, k):
        r = np.random.default_rng([seed, k])
        for i in range(count):
            z = float(r.standard_normal())
            feats = {m: (z * dirs[m][None] + REDUNDANT_NOISE[m] * r.standard_normal((1, d))).astype(np.float32)
                     for m, d in REDUNDANT_DIMS.items()}
            yield Sample(id=f"{split}{i}", label=float(np.clip(1.5 * z, -3, 3)), features=feats)

    return write_dataset(out, synthetic_spec(tuple(REDUNDANT_DIMS.values())),
                         {"train": gen("train", n_train, 1), "valid": gen("valid", n_eval // 2, 2),
                          "test": gen("test", n_eval, 3)})


def _auilc_a(data, out, seed: int, **settings) -> dict[str, float]:
    from msa_toolkit.training.api import train
    from msa_toolkit.training.robustness import robustness

    train("tfn", data, out, preset="tiny", seeds=[seed],
          overrides={"trainer.epochs": 30, "trainer.progress": False, "trainer.plots": False,
                     "trainer.device": "cpu", "trainer.batch_size": 32, "trainer.threads": 1, **settings})
    return robustness(out, data, protocols=["A"], device="cpu").protocols["A"]["auilc"]


def _check_augmentation_pays(tmp_path, seed: int, **settings) -> None:
    _redundant_dataset(tmp_path / "ds")
    plain = _auilc_a(tmp_path / "ds", tmp_path / "plain", seed)
    robust = _auilc_a(tmp_path / "ds", tmp_path / "robust", seed, **settings)
    assert robust["acc2_non0"] > plain["acc2_non0"] + 0.01, (robust, plain)
    assert robust["corr"] > plain["corr"], (robust, plain)


def test_missing_rate_training_keeps_a_higher_auilc(tmp_path):
    _check_augmentation_pays(tmp_path, 1, **{"trainer.missing_rate": 0.5})


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3])
def test_missing_rate_training_keeps_a_higher_auilc_on_other_seeds(tmp_path, seed):
    # (the LNLN schedule, ~25 % of the entries dropped on average, does not beat plain training on this set:
    # its AUILC stays within 0.005 of the plain model's on seeds 1-3; see docs/robustness.md)
    _check_augmentation_pays(tmp_path, seed, **{"trainer.missing_rate": 0.5})


VOCAB = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "[UNK]", "the", "was", "."]
WORDS = ["good", "bad", "movie", "the", "was"]


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory):
    """A late-fusion model fine-tuning a tiny BERT (its own WordPiece vocabulary) on a dataset that keeps raw
    transcripts and their token ids."""
    transformers = pytest.importorskip("transformers")
    from msa_toolkit.data.native import Sample, write_dataset
    from msa_toolkit.data.synthetic import synthetic_spec
    from msa_toolkit.training.api import train

    root = tmp_path_factory.mktemp("bert")
    tok = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)})
    tok.save_pretrained(root / "bert")
    transformers.BertModel(transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1,
                                                   num_attention_heads=2, intermediate_size=32,
                                                   max_position_embeddings=64)).save_pretrained(root / "bert")
    rng = np.random.default_rng(0)

    def gen(split, n):
        for i in range(n):
            text = " ".join(rng.choice(WORDS, size=int(rng.integers(4, 9))))
            ids = np.asarray(tok(text)["input_ids"], np.int64)
            feats = {"text": rng.standard_normal((len(ids), 8)).astype(np.float32),
                     "audio": rng.standard_normal((5, 4)).astype(np.float32),
                     "vision": rng.standard_normal((5, 4)).astype(np.float32)}
            yield Sample(id=f"{split}{i}", label=float(rng.uniform(-3, 3)), features=feats, text=text,
                         arrays={"text.input_ids": ids, "text.attention_mask": np.ones(len(ids), np.int64)})

    write_dataset(root / "ds", synthetic_spec((8, 4, 4)), {"train": gen("train", 16), "valid": gen("valid", 8),
                                                            "test": gen("test", 8)})
    train("late_fusion", root / "ds", root / "run", preset="tiny",
          overrides={"trainer.epochs": 1, "trainer.progress": False, "trainer.plots": False,
                     "trainer.device": "cpu", "model.text_encoder": str(root / "bert")})
    return root


def _fed(monkeypatch) -> list[Batch]:
    """The perturbed batches robustness() feeds the model (rate 0 is scored from the split name)."""
    from msa_toolkit.training import trainer as T

    fed: list[Batch] = []
    real = T.Trainer.predict

    def spy(self, split, drop=()):
        if not isinstance(split, str):
            split = list(split)
            fed.extend(split)
        return real(self, split, drop)

    monkeypatch.setattr(T.Trainer, "predict", spy)
    return fed


def test_dropped_tokens_become_the_text_encoders_unknown_token(bert_run, monkeypatch):
    """A model that fine-tunes a text encoder: protocol A puts its tokenizer's [UNK] id in place of dropped
    tokens and keeps [CLS]/[SEP] (the first and last valid token)."""
    from msa_toolkit.data.module import DataModule
    from msa_toolkit.training.robustness import robustness

    fed = _fed(monkeypatch)
    res = robustness(bert_run / "run", bert_run / "ds", protocols=["A"], rates=[0.0, 1.0], device="cpu")
    assert res.settings["unk_id"] == VOCAB.index("[UNK]")
    original = {sid: row for b in DataModule(bert_run / "ds", batch_size=4).loader("test")
                for sid, row in zip(b.ids, b.text_tokens)}
    assert sum(b.size for b in fed) == len(original) == 8
    for b in fed:
        for i, sid in enumerate(b.ids):
            valid = torch.nonzero(b.text_mask[i]).squeeze(1).tolist()
            assert (b.text_tokens[i, valid[1:-1]] == VOCAB.index("[UNK]")).all()
            ends = [valid[0], valid[-1]]
            assert torch.equal(b.text_tokens[i, ends], original[sid][ends])


def test_benchmark_robustness_adds_auilc_columns_and_reads_them_back(runs, tmp_path):
    from typer.testing import CliRunner

    from msa_toolkit.cli.main import app

    args = ["benchmark", "--models", "late_fusion,text_only", "-d", str(runs / "ds"), "-o", str(tmp_path / "b"),
            "--seeds", "1,2", "--epochs", "1", "--device", "cpu", "--robustness", "A,B", "-p", "tiny"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    md = (tmp_path / "b" / "results.md").read_text()
    assert "AUILC-A acc2_non0" in md and "AUILC-B mae" in md
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    auilc = res["table"]["late_fusion"]["robustness"]["A"]["auilc"]["mae"]
    seeds = [json.loads((tmp_path / "b" / "runs" / "late_fusion" / f"seed_{s}" / "robustness.json").read_text())
             ["protocols"]["A"]["auilc"]["mae"] for s in (1, 2)]
    assert auilc["n"] == 2 and auilc["mean"] == pytest.approx(np.mean(seeds))
    assert auilc["std"] == pytest.approx(np.std(seeds, ddof=1))
    wide = (tmp_path / "b" / "results_wide.csv").read_text().splitlines()[0]
    assert "AUILC-A mae" in wide and "auilc_B_mae_mean" in (tmp_path / "b" / "results.csv").read_text()
    stamp = (tmp_path / "b" / "runs" / "late_fusion" / "seed_1" / "robustness.json").stat().st_mtime_ns
    assert CliRunner().invoke(app, args).exit_code == 0  # runs and their robustness read back, not recomputed
    assert (tmp_path / "b" / "runs" / "late_fusion" / "seed_1" / "robustness.json").stat().st_mtime_ns == stamp


def test_bad_robustness_arguments_are_refused_before_scoring(runs):
    from msa_toolkit.errors import MSAError
    from msa_toolkit.training.robustness import robustness

    ck = runs / "late_fusion"
    for kw, match in (({"protocols": ["C"]}, "unknown protocol"), ({"rates": [0.0, 1.5]}, "rates must lie"),
                      ({"mask_seeds": [1, 1]}, "distinct"), ({"modalities": ["smell"]}, "unknown modality"),
                      ({"split": "dev"}, "no such split")):
        with pytest.raises(MSAError, match=match):
            robustness(ck, runs / "ds", device="cpu", **kw)
    with pytest.raises(MSAError, match="not a checkpoint"):
        robustness(runs / "ds", runs / "ds")


def test_word_noise_perturbs_raw_transcripts_for_token_reading_models(bert_run, monkeypatch):
    from msa_toolkit.data.missing import perturb_words
    from msa_toolkit.training.robustness import robustness

    text = "the movie was good bad the movie"
    assert perturb_words(text, 0.0, sample_rng(1, "words", "x")) == text
    noisy = perturb_words(text, 1.0, sample_rng(1, "words", "x"))
    assert noisy == perturb_words(text, 1.0, sample_rng(1, "words", "x"))
    assert noisy and all(w not in text.split() for w in noisy.split())  # every word omitted or misspelt
    fed = _fed(monkeypatch)
    res = robustness(bert_run / "run", bert_run / "ds", protocols=["noise"], rates=[0.0, 0.9], device="cpu")
    assert res.protocols["noise"]["text"].startswith("word-level")
    known = {VOCAB.index(w) for w in WORDS}
    for b in fed:
        for i in range(b.size):
            ids = b.text_tokens[i, b.text_mask[i]].tolist()
            assert ids[0] == VOCAB.index("[CLS]") and ids[-1] == VOCAB.index("[SEP]")
    from msa_toolkit.data.module import DataModule

    original = [t for b in DataModule(bert_run / "ds", batch_size=4).loader("test") for i in range(b.size)
                for t in b.text_tokens[i, b.text_mask[i]].tolist()[1:-1]]
    inner = [t for b in fed for i in range(b.size) for t in b.text_tokens[i, b.text_mask[i]].tolist()[1:-1]]
    assert all(t in known for t in original)
    assert VOCAB.index("[UNK]") in inner and len(inner) < len(original)  # typos -> [UNK], omissions shorten
    # a model on precomputed text features: text is left as it is, and the JSON says why
    plain = robustness(bert_run / "run", bert_run / "ds", protocols=["noise"], rates=[0.0, 0.5], device="cpu",
                       modalities=["audio", "vision"])
    assert plain.protocols["noise"]["text"] == "not perturbed (--modalities)"
