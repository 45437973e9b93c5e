"""issue 31: a dataset is built beside the folder it replaces and swapped in only when complete: a write that
fails (disk full) leaves the existing dataset intact and no temporary folder; `msa dataset create` says so in
one line, exit 2."""

from __future__ import annotations

import errno

import pytest

from msa_toolkit.cli.main import main
from msa_toolkit.data import safetensors_io
from msa_toolkit.data.native import MANIFEST, load_dataset, write_dataset
from msa_toolkit.data.synthetic import make_synthetic_dataset, synthetic_spec
from msa_toolkit.errors import OutputError


def _snapshot(folder):
    """Every file of ``folder`` with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _disk_full_after(monkeypatch, rows: int):
    """Make the split writer fail with ENOSPC once ``rows`` appends have gone through."""
    real = safetensors_io.StreamingSafetensorsWriter.append
    calls = {"n": 0}

    def append(self, name, arr):
        calls["n"] += 1
        if calls["n"] > rows:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, name, arr)

    monkeypatch.setattr(safetensors_io.StreamingSafetensorsWriter, "append", append)


def test_failed_overwrite_keeps_the_old_dataset_and_leaves_no_temp_folder(tmp_path, monkeypatch):
    ds = tmp_path / "ds"
    make_synthetic_dataset(ds, n_train=6, n_valid=2, n_test=2, dims=(4, 3, 2), lengths=(5, 5, 5))
    before = _snapshot(ds)
    other = make_synthetic_dataset(tmp_path / "src", n_train=8, n_valid=3, n_test=3, dims=(4, 3, 2), seed=1)
    _disk_full_after(monkeypatch, 20)
    with pytest.raises(OutputError, match="No space left on device") as e:
        write_dataset(ds, other.spec, {s: other.split(s) for s in other.splits}, overwrite=True)
    assert "\n" not in str(e.value) and "unchanged" in str(e.value)
    assert _snapshot(ds) == before and load_dataset(ds).num_samples() == {"train": 6, "valid": 2, "test": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "src"]


def test_failed_write_to_a_new_folder_leaves_nothing(tmp_path, monkeypatch):
    src = make_synthetic_dataset(tmp_path / "src", n_train=6, n_valid=2, n_test=2, dims=(4, 3, 2))
    _disk_full_after(monkeypatch, 5)
    with pytest.raises(OutputError):
        write_dataset(tmp_path / "new", src.spec, {s: src.split(s) for s in src.splits})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_overwrite_replaces_the_whole_dataset_and_keeps_other_files(tmp_path):
    ds = tmp_path / "ds"
    make_synthetic_dataset(ds, n_train=6, n_valid=2, n_test=2, dims=(4, 3, 2))
    (ds / "errors.json").write_text("[]")  # an earlier build's list of failed rows: not the new dataset's
    (ds / "notes.txt").write_text("mine")  # a user's file in the folder stays
    src = make_synthetic_dataset(tmp_path / "src", n_train=5, n_valid=0, n_test=2, dims=(4, 3, 2), seed=3)
    write_dataset(ds, src.spec, {"train": src.split("train")}, overwrite=True)
    assert sorted(p.name for p in ds.iterdir()) == [MANIFEST, "notes.txt", "train.safetensors"]
    assert load_dataset(ds).num_samples() == {"train": 5} and (ds / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "src"]


def test_create_overwrite_that_fails_while_writing_exits_2_and_keeps_the_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MSA_CACHE_DIR", str(tmp_path / "cache"))
    labels = tmp_path / "label.csv"
    labels.write_text("id,text,label,mode\na_1,what a great movie,2.5,train\na_2,it was awful,-2,train\n"
                      "b_1,fine i guess,0.2,dev\nc_1,not bad at all,1,test\n")
    ds = tmp_path / "ds"
    args = ["dataset", "create", "--labels", str(labels), "--transcripts", "label", "-o", str(ds), "-q"]
    assert main(args) == 0
    before = _snapshot(ds)
    capsys.readouterr()
    _disk_full_after(monkeypatch, 3)
    assert main([*args, "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and str(ds) in err
    assert _snapshot(ds) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "ds", "label.csv"]


def test_overwrite_of_the_working_directory_keeps_the_folder(tmp_path, monkeypatch):
    """The folder itself is never renamed (it may be the working directory or a mount point): its entries are."""
    ds = tmp_path / "ds"
    make_synthetic_dataset(ds, n_train=4, n_valid=2, n_test=2, dims=(4, 3, 2))
    inode = ds.stat().st_ino
    (ds / "notes.txt").write_text("mine")
    monkeypatch.chdir(ds)
    src = make_synthetic_dataset(tmp_path / "src", n_train=5, n_valid=2, n_test=2, dims=(4, 3, 2), seed=2)
    got = write_dataset(".", src.spec, {s: src.split(s) for s in src.splits}, overwrite=True)
    assert got.num_samples()["train"] == 5 and ds.stat().st_ino == inode
    assert sorted(p.name for p in ds.iterdir()) == [MANIFEST, "notes.txt", "test.safetensors", "train.safetensors",
                                                    "valid.safetensors"]


def test_a_failed_swap_puts_the_old_dataset_back(tmp_path, monkeypatch):
    import os

    from msa_toolkit import _io

    ds = tmp_path / "ds"
    make_synthetic_dataset(ds, n_train=4, n_valid=2, n_test=2, dims=(4, 3, 2))
    before = _snapshot(ds)
    src = make_synthetic_dataset(tmp_path / "src", n_train=5, n_valid=2, n_test=2, dims=(4, 3, 2), seed=2)
    real, calls = os.replace, {"n": 0}

    def flaky(a, b):  # the second move of a new entry into the dataset folder fails
        from pathlib import Path

        if Path(a).parent.name.endswith(".tmp") and Path(b).parent == ds.resolve():
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.EIO, "I/O error")
        return real(a, b)

    monkeypatch.setattr(_io.os, "replace", flaky)
    with pytest.raises(OutputError, match="I/O error"):
        write_dataset(ds, src.spec, {s: src.split(s) for s in src.splits}, overwrite=True)
    monkeypatch.setattr(_io.os, "replace", real)
    assert calls["n"] == 2 and _snapshot(ds) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "src"]
