"""Run fingerprints stay stable when the trainer gains a setting: finished runs are not trained again."""

from msa_toolkit.training.config import TrainConfig
from msa_toolkit.training.fingerprint import LATER_SETTINGS, run_fingerprint

#: the trainer keys every fingerprint has held since fingerprints were introduced (a run folder written then,
#: e.g. a `msa benchmark` run, records exactly these); a new TrainConfig field must not add to them at its default
FIRST_TRAINER_KEYS = sorted("""
allow_frozen_text batch_size bucket_by_length compile cosine_epochs drop_last epochs grad_accum grad_clip_norm
grad_clip_value limit_train_batches lr max_lengths metric_set min_delta monitor monitor_mode monitor_ties normalize
optimizer patience plateau_factor plateau_patience precision rollback_factor rollback_limit rollback_patience
scheduler test_every_epoch test_select warmup_epochs warmup_ratio weight_decay""".split())


def _fp(**trainer):
    return run_fingerprint(None, "tfn", None, "toolkit", {}, TrainConfig(**trainer).to_dict(), 1)


def test_a_default_trainer_fingerprints_the_same_keys_as_the_first_runs():
    # fails when a TrainConfig field is added without a LATER_SETTINGS entry (or a DISPLAY_SETTINGS one): every
    # finished run would then be trained again by `msa benchmark` and refused by `msa train --resume`
    assert sorted(_fp()["trainer"]) == FIRST_TRAINER_KEYS


def test_later_settings_hold_the_trainer_defaults_and_enter_the_fingerprint_when_changed():
    defaults = TrainConfig().to_dict()
    for key, default in LATER_SETTINGS.items():
        assert defaults[key] == default, key
    assert _fp(grad_accum_sum=True)["trainer"]["grad_accum_sum"] is True
    assert _fp(peak_hold_epochs=1)["trainer"]["peak_hold_epochs"] == 1
    assert _fp(grad_clip_value=1.0, clip_each_backward=True)["trainer"]["clip_each_backward"] is True
    assert _fp(grad_accum=2, drop_partial_accum=True)["trainer"]["drop_partial_accum"] is True


def test_a_saved_fingerprint_that_recorded_later_settings_at_their_defaults_reads_back_as_today(tmp_path):
    from msa_toolkit.training.fingerprint import read_fingerprint, write_fingerprint

    today = _fp()
    write_fingerprint(tmp_path, {**today, "trainer": {**today["trainer"], **LATER_SETTINGS}})
    assert read_fingerprint(tmp_path) == today
    changed = _fp(grad_accum_sum=True)
    write_fingerprint(tmp_path, changed)
    assert read_fingerprint(tmp_path) == changed  # a setting away from its default is kept
