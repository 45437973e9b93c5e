"""Label-file parsing: both real variants, created splits, and every error case."""

from __future__ import annotations

import pytest

from msa_toolkit.data.labels import make_splits, read_labels
from msa_toolkit.errors import DatasetError


def _write(tmp_path, text, name="label.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_real_mosi_and_mosei_label_files(shared_data):
    mosi = read_labels(shared_data / "mosi" / "label.csv")
    assert mosi.split_sizes() == {"train": 1281, "valid": 229, "test": 685}
    assert mosi.id_style == "id" and not mosi.splits_created
    r = mosi.rows[0]
    assert (r.id, r.video_id, r.clip_id, r.split) == ("03bSnISJMiM_1", "03bSnISJMiM", "1", "train")
    mosei = read_labels(shared_data / "mosei" / "label.csv")
    assert mosei.split_sizes() == {"train": 16274, "valid": 1861, "test": 4653}
    r = mosei.rows[0]
    assert (r.id, r.video_id, r.clip_id) == ("-3g5yACwYnA_82_7645", "-3g5yACwYnA", "82_7645")


def test_mmsa_fet_columns_case_insensitive(tmp_path):
    p = _write(tmp_path, "video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode\n"
                         "v1,1,hello,0.5,1,-1,0,Positive,TRAIN\n"
                         "v1,2,bye,-0.5,,,,Negative,Dev\n"
                         "v2,1,ok,0,0,0,0,Neutral,Test\n")
    t = read_labels(p)
    assert [r.split for r in t.rows] == ["train", "valid", "test"]
    assert t.rows[0].label_T == 1.0 and t.rows[0].label_A == -1.0 and t.rows[1].label_T is None
    assert t.rows[0].annotation == "Positive" and t.rows[0].id == "v1_1"


def test_tsv_and_bom(tmp_path):
    p = _write(tmp_path, "\ufeffid\tlabel\tmode\na_1\t1\ttrain\n", "labels.tsv")
    assert read_labels(p).rows[0].label == 1.0


def test_missing_label_column(tmp_path):
    p = _write(tmp_path, "id,text,mode\na_1,hi,train\n")
    with pytest.raises(DatasetError, match=r"label.csv: no label column.*columns found: \['id', 'text', 'mode'\]"):
        read_labels(p)


def test_missing_id_columns(tmp_path):
    p = _write(tmp_path, "video_id,label\nv,1\n")
    with pytest.raises(DatasetError, match="'video_id' \\+ 'clip_id' or a single 'id'"):
        read_labels(p)


def test_unknown_split_names_listed_with_lines(tmp_path):
    p = _write(tmp_path, "id,label,mode\na_1,1,train\na_2,1,holdout\nb_1,0,Holdout\nb_2,0,trian\n")
    with pytest.raises(DatasetError) as e:
        read_labels(p)
    msg = str(e.value)
    assert "'mode'" in msg and "'holdout' on lines 3" in msg and "'Holdout' on lines 4" in msg
    assert "'trian' on lines 5" in msg


def test_duplicate_ids_named(tmp_path):
    p = _write(tmp_path, "video_id,clip_id,label\nv,1,0\nv,2,0\nv,1,1\n")
    with pytest.raises(DatasetError, match=r"duplicate sample ids: 'v_1' \(lines 2, 4\)"):
        read_labels(p)


def test_bad_label_value(tmp_path):
    p = _write(tmp_path, "id,label\na_1,1\na_2,positive\n")
    with pytest.raises(DatasetError, match=r"column 'label' on line 3 is not a number: 'positive'"):
        read_labels(p)
    p = _write(tmp_path, "id,label\na_1,\n")
    with pytest.raises(DatasetError, match="column 'label' is empty on line 2"):
        read_labels(p)


def test_partly_empty_mode_is_an_error(tmp_path):
    p = _write(tmp_path, "id,label,mode\na_1,1,train\na_2,1,\n")
    with pytest.raises(DatasetError, match="empty on lines 3"):
        read_labels(p)


def test_created_splits_grouped_by_video_and_seeded(tmp_path):
    lines = ["id,label"] + [f"vid{v}_{c},{(v + c) % 7 - 3}" for v in range(30) for c in range(v % 5 + 1)]
    p = _write(tmp_path, "\n".join(lines) + "\n")
    t = read_labels(p, seed=1)
    assert t.splits_created and t.split_seed == 1
    split_of_video: dict[str, set] = {}
    for r in t.rows:
        split_of_video.setdefault(r.video_id, set()).add(r.split)
    assert all(len(s) == 1 for s in split_of_video.values())  # no video crosses splits
    sizes = t.split_sizes()
    assert set(sizes) == {"train", "valid", "test"}
    n = len(t)
    assert abs(sizes["train"] / n - 0.7) < 0.12 and abs(sizes["test"] / n - 0.2) < 0.12
    assert [r.split for r in read_labels(p, seed=1).rows] == [r.split for r in t.rows]
    assert [r.split for r in read_labels(p, seed=2).rows] != [r.split for r in t.rows]


def test_make_splits_small_and_ratios():
    a = make_splits(["a", "b", "c"], 0)
    assert sorted(a.values()) == ["test", "train", "valid"]
    a = make_splits([f"v{i}" for i in range(20)], 0, ratios=(1, 0, 0))
    assert set(a.values()) == {"train"}
    with pytest.raises(DatasetError, match="three non-negative"):
        make_splits(["a"], 0, ratios=(1, 1))


# -- issue 15 ------------------------------------------------------------------------------------

def test_nonfinite_and_out_of_range_labels_are_errors_with_lines(tmp_path):
    p = _write(tmp_path, "id,label,mode\na_1,inf,train\na_2,7,train\na_3,-12,test\na_4,1.5,test\n")
    with pytest.raises(DatasetError, match=r"inside \[-3, 3\].*'label': line 2: inf, line 3: 7, line 4: -12") as e:
        read_labels(p)
    assert str(p) in str(e.value) and "sims [-1, 1]" in str(e.value)
    p = _write(tmp_path, "id,label,label_T,mode\na_1,0.5,nan,train\na_2,0.2,-1.5,train\n")
    read_labels(p)  # an empty/NaN unimodal label is "absent"; -1.5 is inside [-3, 3]
    p = _write(tmp_path, "id,label,label_T,mode\na_1,0.5,-inf,train\n")
    with pytest.raises(DatasetError, match="'label_T': line 2: -inf"):
        read_labels(p)


@pytest.mark.parametrize("videos", [1, 2])
def test_created_splits_with_too_few_videos_still_have_valid_and_test(tmp_path, videos):
    lines = ["video_id,clip_id,label"] + [f"v{i % videos},{i},{i % 3 - 1}" for i in range(9)]
    t = read_labels(_write(tmp_path, "\n".join(lines) + "\n"))
    assert set(t.split_sizes()) == {"train", "valid", "test"} and t.split_grouping == "clip"
    t = read_labels(_write(tmp_path, "\n".join(["video_id,clip_id,label"] + [f"v{i % 3},{i},0" for i in range(9)])))
    assert t.split_grouping == "video"


def test_unquoted_text_with_separator_is_an_error_not_truncated(tmp_path):
    """An unquoted comma in the text column must not silently cut the transcript at the comma."""
    p = _write(tmp_path, "id,label,mode,text\n"
                         "a,1,train,fine words\n"
                         "b,2,train,I love it, and it made me happy.\n")
    with pytest.raises(DatasetError, match=r"lines 3 have more fields than the header's 4.*quoted"):
        read_labels(p)
    p = _write(tmp_path, 'id,label,mode,text\nb,2,train,"I love it, and it made me happy."\n')
    assert read_labels(p).rows[0].text == "I love it, and it made me happy."
    p = _write(tmp_path, "id,label,mode,text,\nb,2,train,words,\n")  # trailing separators: harmless
    assert read_labels(p).rows[0].text == "words"


@pytest.mark.parametrize("value", ["nan", "NaN", "NA", "null"])
def test_a_nan_label_is_not_a_finite_number_not_empty(tmp_path, value):
    """issue 31: a literal nan (or NA/null) in the label column is named as such, not called "empty"."""
    p = _write(tmp_path, f"id,label\na_1,1\na_2,{value}\n")
    with pytest.raises(DatasetError, match=rf"column 'label' on line 3 is '{value}', not a finite number"):
        read_labels(p)
