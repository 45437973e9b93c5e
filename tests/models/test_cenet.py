"""CENET (issue 37): the CE attention on a hand-made case, CE inside a small local BERT."""

from __future__ import annotations

import torch

from msa_toolkit.data.batch import synthetic_batch
from msa_toolkit.layers import MultiHeadAttention
from msa_toolkit.models import create_model


def test_unprojected_attention_with_a_fixed_scale():
    att = MultiHeadAttention(2, 1, scale=8.0, out_proj=False)
    with torch.no_grad():
        att.qkv.weight.copy_(torch.eye(2).repeat(3, 1))
        att.qkv.bias.zero_()
    q, kv = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    w = torch.softmax(torch.tensor([8.0, 0.0]), 0)  # the third key is padding
    want = w[0] * kv[0, 0] + w[1] * kv[0, 1]
    got = att(q, kv, kv, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(got[0, 0], want)


def test_ce_runs_inside_a_local_bert_after_its_first_layer(tmp_path):
    transformers = __import__("pytest").importorskip("transformers")
    config = transformers.BertConfig(vocab_size=100, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=16, max_position_embeddings=16)
    transformers.BertModel(config).save_pretrained(tmp_path)
    torch.manual_seed(0)
    model = create_model("cenet", "tiny", text_encoder=str(tmp_path), audio_dim=5, vision_dim=7).eval()
    assert not any(p.requires_grad for p in model.text_encoder.model.embeddings.parameters())
    b = synthetic_batch(3, (6, 9, 7), (8, 5, 7), seed=0, with_tokens=True)
    pred = model(b).prediction
    b.vision = b.vision + 3 * b.vision_mask.unsqueeze(-1)
    assert not torch.allclose(model(b).prediction, pred)  # the visual input reaches the score through CE
    calls = []
    handle = model.ce.register_forward_hook(lambda m, args, out: calls.append(args[0].shape))
    model(b)
    handle.remove()
    assert calls == [(3, 6, 8)]  # once, on the token states of the first layer
    decay, no_decay = model.param_groups(1e-5, 1e-4)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert any(p is model.ce.cat_connect.bias for p in decay["params"])  # MMSA decays all of CE
    assert any(p is model.head[1].bias for p in no_decay["params"])
