"""Reusable building blocks of the models, apart from the assembled models in :mod:`msa_toolkit.models`.

Shape conventions: sequences are batch-first ``[B, L, D]``; masks are bool ``[B, L]`` with True on valid steps
(the :class:`~msa_toolkit.data.batch.Batch` convention), ``None`` for "every step valid". Every block tolerates
a sample whose mask is all False (an absent modality): pooling gives zeros, attention over no valid key a zero
update instead of NaN.

- :mod:`.masking`: masks, pooling (:func:`masked_mean`, :func:`last_valid`, :func:`take_last`), activations
- :mod:`.dropout`: :class:`Dropout` / :func:`dropout` with the NumPy-drawn CPU mask (:func:`keep_mask`)
- :mod:`.positions`: sinusoidal tables in three layouts, a learned table
- :mod:`.attention`: :func:`attend` (the one scaled dot-product call), :class:`MultiHeadAttention`
- :mod:`.transformer`: :class:`FeedForward`, :class:`TransformerBlock`, :class:`EncoderLayer`,
  :class:`CrossModalTransformer`; ``forward_last`` computes the final block for the last valid step only
- :mod:`.heads`: :class:`ConvProjection`, :class:`MLPHead`, :class:`ResidualHead`, gradient reversal
- :mod:`.losses`: the criteria the models' objectives combine
- :mod:`.recurrent`: :class:`SequenceLSTM` (packed LSTM over the valid steps), :func:`run_rnn` (fp32 under CPU
  autocast)
- :mod:`.text_encoder`: the optional fine-tuned transformers text encoder (:func:`build_text_encoder`)
"""

from .attention import MATH_PATH_MAX_KEYS, MultiHeadAttention, attend
from .dropout import FAST_DRAW_MIN_NUMEL, Dropout, dropout, keep_mask
from .heads import ConvProjection, GradientReversal, GradReverse, MLPHead, ResidualHead, grad_reverse
from .masking import (ACTIVATIONS, activation, last_valid, mask_fill, masked_mean, take_last, unpadded,
                      zero_empty)
from .positions import SINUSOID_LAYOUTS, LearnedPositionalEncoding, SinusoidalPositionalEncoding, sinusoidal_table
from .recurrent import SequenceLSTM, run_rnn, valid_lengths
from .text_encoder import TextEncoder, build_text_encoder, text_features
from .transformer import CrossModalTransformer, EncoderLayer, FeedForward, TransformerBlock

__all__ = [
    "MATH_PATH_MAX_KEYS", "MultiHeadAttention", "attend", "FAST_DRAW_MIN_NUMEL", "Dropout", "dropout", "keep_mask",
    "ConvProjection", "GradientReversal", "GradReverse", "MLPHead", "ResidualHead", "grad_reverse", "ACTIVATIONS",
    "activation", "last_valid", "mask_fill", "masked_mean", "take_last", "unpadded", "zero_empty",
    "SINUSOID_LAYOUTS", "LearnedPositionalEncoding", "SinusoidalPositionalEncoding", "sinusoidal_table",
    "SequenceLSTM", "run_rnn", "valid_lengths", "TextEncoder", "build_text_encoder", "text_features",
    "CrossModalTransformer", "EncoderLayer", "FeedForward",
    "TransformerBlock",
]
