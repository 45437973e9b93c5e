"""An optional fine-tuned transformers text encoder, usable by every model (``text_encoder`` config field)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["TextEncoder", "build_text_encoder", "text_features"]


class TextEncoder(nn.Module):
    """A transformers encoder fine-tuned inside a model (token ids -> hidden states).

    Loads ``AutoModel.from_pretrained(name_or_path, local_files_only=True)`` (never
    downloads). Models store it as ``self.text_encoder`` so
    ``MSAModel.num_parameters()`` can exclude it.

    ``forward(tokens [B, Lt] long, mask [B, Lt] bool) -> [B, Lt, hidden_size]``; with
    ``all_layers=True`` returns the tuple of every layer's hidden states instead.
    Parameters the encoder does not use for hidden states (e.g. BERT's pooler) are
    frozen so they do not sit in the optimiser with no gradient.
    """

    def __init__(self, name_or_path: str):
        super().__init__()
        try:
            from transformers import AutoModel
        except ImportError as e:  # pragma: no cover
            raise ImportError("fine-tuning a text encoder needs the `transformers` package") from e
        self.model = AutoModel.from_pretrained(name_or_path, local_files_only=True)
        self.hidden_size = int(self.model.config.hidden_size)
        pooler = getattr(self.model, "pooler", None)
        if isinstance(pooler, nn.Module):
            for p in pooler.parameters():
                p.requires_grad_(False)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None, all_layers: bool = False):
        if mask is None:
            mask = tokens != 0
        out = self.model(input_ids=tokens, attention_mask=mask.long(), output_hidden_states=all_layers)
        return tuple(out.hidden_states) if all_layers else out.last_hidden_state



def build_text_encoder(name_or_path: str | None, text_dim: int) -> tuple[TextEncoder | None, int]:
    """A model's text input: ``(TextEncoder(name_or_path), its hidden size)`` for a fine-tuned encoder (a model's
    ``config.text_encoder``), or ``(None, text_dim)`` for precomputed text features. Models store the encoder
    as ``self.text_encoder`` and read their text with :func:`text_features`."""
    if name_or_path:
        encoder = TextEncoder(name_or_path)
        return encoder, encoder.hidden_size
    return None, text_dim


def text_features(encoder: TextEncoder | None, batch: Any) -> torch.Tensor:
    """``batch.text`` when ``encoder`` is None, else the encoder's states for ``batch.text_tokens``."""
    if encoder is None:
        return batch.text
    if batch.text_tokens is None:
        raise ValueError("this model fine-tunes a text encoder (config.text_encoder is set) but the batch "
                         "has no text_tokens; build the dataset with token ids")
    return encoder(batch.text_tokens, batch.text_mask)
