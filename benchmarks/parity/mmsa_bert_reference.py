"""The tiny random BERT both sides of the MMSA parity scripts with a BERT text encoder share, and their inputs.

MMSA's text encoder loads ``bert-base-uncased`` by name; the scripts replace it by :func:`tiny_bert`, a small
randomly initialised BertModel built identically on both sides (the toolkit side loads the same weights from
the folder :func:`save_tiny_bert` writes, as any local Hugging Face encoder; MMSA's side gets :func:`bert_stub`
as its ``BertTextEncoder``). The checkout itself is imported with ``mmsa_reference.import_mmsa``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import ParamMap, same  # noqa: E402

#: the tiny BERT of both sides (no dropout: the two sides draw dropout masks differently)
TINY_BERT = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def tiny_bert(seed: int, **overrides: Any) -> nn.Module:
    """A small randomly initialised BertModel (seeded; :data:`TINY_BERT` with ``overrides``), the text encoder
    of both sides."""
    import transformers

    torch.manual_seed(seed)
    return transformers.BertModel(transformers.BertConfig(**{**TINY_BERT, **overrides}))


def save_tiny_bert(seed: int, folder: Path, **overrides: Any) -> str:
    """Write :func:`tiny_bert` to ``folder`` (the toolkit's ``text_encoder`` path) and return the path."""
    tiny_bert(seed, **overrides).save_pretrained(folder)
    return str(folder)


class StubBertTextEncoder(nn.Module):
    """Stands in for MMSA's BertTextEncoder (which loads a pretrained name): the same forward, on the tiny BERT."""

    seed = 0
    #: changes to :data:`TINY_BERT` (MISA's text projection assumes BERT's 768-d states)
    overrides: dict = {}

    def __init__(self, use_finetune: bool = True, transformers: str = "bert", pretrained: str = ""):
        super().__init__()
        self.model = tiny_bert(self.seed, **self.overrides)
        self.use_finetune = use_finetune

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        ids, mask, segments = text[:, 0, :].long(), text[:, 1, :].float(), text[:, 2, :].long()
        return self.model(input_ids=ids, attention_mask=mask, token_type_ids=segments)[0]


def bert_stub(seed: int = 0, **overrides: Any) -> type:
    """A :class:`StubBertTextEncoder` class of its own (seed, :data:`TINY_BERT` changes) to patch into a module."""
    return type("StubBertTextEncoder", (StubBertTextEncoder,), {"seed": seed, "overrides": dict(overrides)})


def bert_maps(ref_prefix: str, tk_prefix: str, ref: nn.Module) -> list[ParamMap]:
    """One-to-one maps of every BERT parameter: ``<ref_prefix>.<name>`` -> ``<tk_prefix>.<name>``."""
    return [same(n, tk_prefix + n[len(ref_prefix):]) for n, _ in ref.named_parameters() if n.startswith(ref_prefix)]


def token_batch(batch_size: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(token ids [B, L] padded with 0, mask [B, L]): sample 0 full, the others shorter."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, length + 1, (batch_size,), generator=g)
    lengths[0] = length
    mask = torch.arange(length)[None] < lengths[:, None]
    ids = torch.randint(1, TINY_BERT["vocab_size"], (batch_size, length), generator=g) * mask
    return ids, mask


def mmsa_text(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MMSA's BERT text input [B, 3, L]: ids, mask, segment ids (zeros), as floats."""
    return torch.stack([ids.float(), mask.float(), torch.zeros_like(ids, dtype=torch.float)], dim=1)


def sequences(batch_size: int, length: int, dim: int, seed: int, lengths: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features [B, L, D] zero after each sample's length, mask [B, L], lengths [B]); sample 0 full."""
    g = torch.Generator().manual_seed(seed)
    if lengths is None:
        lengths = torch.randint(1, length + 1, (batch_size,), generator=g)
        lengths[0] = length
    mask = torch.arange(length)[None] < lengths[:, None]
    return torch.randn(batch_size, length, dim, generator=g) * mask.unsqueeze(-1), mask, lengths
