"""Text extractor: bundled MiniLM and an arbitrary local transformers folder (a tiny random BERT)."""

from __future__ import annotations

import numpy as np
import pytest

from msa_toolkit.errors import ModelLoadError
from msa_toolkit.extractors.base import create_extractor, list_extractors
from msa_toolkit.extractors.text import TransformerTextExtractor, bundled_minilm_path
from msa_toolkit.features import Transcript, Word


@pytest.fixture(scope="module")
def minilm():
    ex = create_extractor("minilm")
    ex.load()
    return ex


def test_registered():
    assert {"minilm", "transformer"} <= set(list_extractors("text"))
    assert (bundled_minilm_path() / "config.json").is_file()


def test_minilm_tokens_cls_sep_and_word_map(minilm):
    tr = Transcript.from_text("Hello, wonderful world")
    (seq, arr), = minilm.encode([tr])
    assert minilm.dim == 384 and seq.dim == 384
    ids, wi = arr["text.input_ids"], arr["text.word_index"]
    assert seq.length == len(ids) == len(wi) == len(arr["text.attention_mask"])
    tok = minilm._tokenizer
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert wi[0] == -1 and wi[-1] == -1
    # every word has at least one token and indices are non-decreasing
    inner = wi[1:-1]
    assert set(inner.tolist()) == {0, 1, 2} and np.all(np.diff(inner) >= 0)
    # "Hello," -> "hello" "," : two tokens of word 0
    assert (inner == 0).sum() == 2
    assert np.isfinite(seq.values).all() and seq.mask.all()


def test_batching_matches_single(minilm):
    texts = ["short", "a somewhat longer sentence with more words in it", "", "medium length text here"]
    trs = [Transcript.from_text(t) for t in texts]
    minilm.params["batch_size"] = 3
    together = minilm.encode(trs)
    for tr, (seq, arr) in zip(trs, together):
        (s1, a1), = minilm.encode([tr])
        np.testing.assert_array_equal(arr["text.input_ids"], a1["text.input_ids"])
        np.testing.assert_allclose(seq.values, s1.values, atol=1e-4)
    # the empty transcript still yields [CLS] [SEP]
    assert together[2][0].length == 2 and (together[2][1]["text.word_index"] == -1).all()


def test_word_times_follow_transcript(minilm):
    tr = Transcript((Word("good", 0.5, 0.8), Word("movie", 0.9, 1.3)))
    (seq, arr), = minilm.encode([tr])
    wi = arr["text.word_index"]
    assert np.isnan(seq.times[0]) and np.isnan(seq.times[-1])
    np.testing.assert_allclose(seq.times[wi == 1], 0.9)


LONG = "one two three four five six seven eight nine ten eleven twelve"


def test_max_length_truncates():
    ex = create_extractor("minilm", max_length=8, overflow="truncate")
    (seq, arr), = ex.encode([Transcript.from_text(LONG)])
    assert seq.length == 8 and arr["text.word_index"][-1] == -1
    assert arr["text.word_index"].max() == 5  # six words fit between [CLS] and [SEP]


def test_long_text_is_encoded_in_windows():
    ex = create_extractor("minilm", max_length=8)
    short = Transcript.from_text("good film")
    (seq, arr), (s2, a2) = ex.encode([Transcript.from_text(LONG), short])
    wi, ids = arr["text.word_index"], arr["text.input_ids"]
    tok = ex._tokenizer
    # every word kept, one [CLS] at the start and one [SEP] at the end, none in between
    assert seq.length == 14 and sorted(set(wi.tolist())) == [-1] + list(range(12))
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert (wi[1:-1] >= 0).all() and np.all(np.diff(wi[1:-1]) >= 0)
    # the second window was encoded on its own: its tokens equal a separate encoding of those words
    (w2, _), = ex.encode([Transcript.from_text("seven eight nine ten eleven twelve")])
    np.testing.assert_allclose(seq.values[7:13], w2.values[1:7], atol=1e-4)
    # short texts are unaffected
    (ref, _), = create_extractor("minilm").encode([short])
    np.testing.assert_allclose(s2.values, ref.values, atol=1e-4)
    with pytest.raises(ValueError, match="overflow"):
        create_extractor("minilm", overflow="drop")


def test_spec_excludes_runtime_params():
    spec = create_extractor("minilm", batch_size=7).spec
    assert "batch_size" not in spec.params and "device" not in spec.params
    assert spec.dim == 384 and spec.modality == "text" and spec.frame_rate is None


def _tiny_bert(folder):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "was", "##s", ",", "."]
    # a WordPiece vocabulary written by the test (transformers 5 takes it as a dict)
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tok.save_pretrained(folder)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(folder)
    return vocab


def test_any_local_folder_works(tmp_path):
    vocab = _tiny_bert(tmp_path)
    ex = create_extractor("transformer", model=str(tmp_path))
    assert ex.dim == 32
    (seq, arr), = ex.encode([Transcript.from_text("The movies was good, zebra")])
    assert seq.values.shape == (len(arr["text.input_ids"]), 32)
    ids = arr["text.input_ids"].tolist()
    assert ids[0] == vocab.index("[CLS]") and ids[-1] == vocab.index("[SEP]")
    assert vocab.index("[UNK]") in ids  # "zebra" is not in the vocabulary
    assert ids.count(vocab.index("##s")) == 1  # "movies" -> movie ##s
    # the spec records the folder, so a different model can never be confused with MiniLM
    assert ex.spec.params["model"] == str(tmp_path) and ex.spec.dim == 32


def test_max_length_capped_by_positions(tmp_path):
    _tiny_bert(tmp_path)
    ex = TransformerTextExtractor(model=str(tmp_path), max_length=1000)
    assert ex.max_length == 64


def test_unavailable_model_is_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="offline"):
        _ = create_extractor("transformer", model="no-such-org/no-such-model-xyz").dim
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        create_extractor("transformer", model=str(tmp_path / "empty"))


def test_unknown_param():
    with pytest.raises(ValueError, match="no parameter"):
        create_extractor("minilm", hidden=3)


def test_layer_choice(minilm):
    tr = [Transcript.from_text("a fine day")]
    (last, _), = minilm.encode(tr)
    (six, _), = create_extractor("minilm", layer=6).encode(tr)  # 6 layers: hidden_states[6] is the last
    (emb, _), = create_extractor("minilm", layer=0).encode(tr)
    np.testing.assert_allclose(last.values, six.values, atol=1e-5)
    assert not np.allclose(last.values, emb.values)
