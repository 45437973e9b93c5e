"""Fixtures shared by the model tests."""

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A tiny randomly initialised BERT saved to a temp folder (tests text-encoder fine-tuning offline)."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=64)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_bert")
    transformers.BertModel(cfg).save_pretrained(path)
    return str(path)
