"""Reusable building blocks of the models, apart from the assembled models in :mod:`msa_toolkit.models`.

Shape conventions: sequences are batch-first ``[B, L, D]``; masks are bool ``[B, L]`` with True on valid steps
(the :class:`~msa_toolkit.data.batch.Batch` convention), ``None`` for "every step valid". Every block tolerates
a sample whose mask is all False (an absent modality): pooling gives zeros, attention over no valid key a zero
update instead of NaN.

- :mod:`.masking`: masks, pooling (:func:`masked_mean`, :func:`last_valid`, :func:`take_last`), activations
- :mod:`.dropout`: :class:`Dropout` / :func:`dropout` with the NumPy-drawn CPU mask (:func:`keep_mask`)
- :mod:`.positions`: sinusoidal tables in three layouts, a learned table
- :mod:`.attention`: :func:`attend` (the one scaled dot-product call), :class:`MultiHeadAttention`,
  :class:`AdditiveAttention` (seq2seq decoders)
- :mod:`.transformer`: :class:`FeedForward`, :class:`TransformerBlock`, :class:`EncoderLayer`,
  :class:`CrossModalTransformer`; ``forward_last`` computes the final block for the last valid step only
- :mod:`.heads`: :class:`ConvProjection`, :class:`MLPHead`, :class:`ResidualHead`, gradient reversal
- :mod:`.losses`: the criteria the models' objectives combine
- :mod:`.fusion`: :func:`tensor_fusion`, TFN's fusion tensor (TFN, MTFN)
- :mod:`.text_encoder`: the optional fine-tuned transformers text encoder (:func:`build_text_encoder`)
- :mod:`.recurrent`: RNN runner (fp32 under CPU autocast), :class:`SequenceLSTM` (packed, over the valid steps),
  TFN's subnetworks, time-step batch norm, step alignment (TFN, LMF, LF-DNN, MFN, EF-LSTM, Self-MM, MISA, MMIM)
- :mod:`.memory_fusion`: the Memory Fusion Network's recurrent core (MFM), :func:`text_aligned` inputs
"""

from .attention import MATH_PATH_MAX_KEYS, AdditiveAttention, MultiHeadAttention, attend
from .dropout import FAST_DRAW_MIN_NUMEL, Dropout, dropout, keep_mask
from .fusion import tensor_fusion
from .heads import ConvProjection, GradientReversal, GradReverse, MLPHead, ResidualHead, grad_reverse
from .memory_fusion import MFN_WINDOW, MemoryFusionCore, text_aligned
from .masking import (ACTIVATIONS, activation, last_valid, mask_fill, masked_mean, take_last, unpadded,
                      zero_empty)
from .positions import SINUSOID_LAYOUTS, LearnedPositionalEncoding, SinusoidalPositionalEncoding, sinusoidal_table
from .recurrent import (SequenceLSTM, StepBatchNorm, TextSubNet, UtteranceSubNet, align_steps, run_rnn, text_timeline,
                        valid_lengths)
from .text_encoder import TextEncoder, build_text_encoder, text_features
from .transformer import CrossModalTransformer, EncoderLayer, FeedForward, TransformerBlock

__all__ = [
    "MATH_PATH_MAX_KEYS", "MultiHeadAttention", "attend", "FAST_DRAW_MIN_NUMEL", "Dropout", "dropout", "keep_mask",
    "ConvProjection", "GradientReversal", "GradReverse", "MLPHead", "ResidualHead", "grad_reverse", "ACTIVATIONS",
    "activation", "last_valid", "mask_fill", "masked_mean", "take_last", "unpadded", "zero_empty",
    "SINUSOID_LAYOUTS", "LearnedPositionalEncoding", "SinusoidalPositionalEncoding", "sinusoidal_table",
    "TextEncoder", "build_text_encoder", "text_features", "CrossModalTransformer", "EncoderLayer", "FeedForward",
    "TransformerBlock", "StepBatchNorm", "TextSubNet", "UtteranceSubNet", "align_steps", "run_rnn",
    "text_timeline", "tensor_fusion",
    "AdditiveAttention", "MFN_WINDOW", "MemoryFusionCore", "text_aligned",
    "SequenceLSTM", "valid_lengths",
]
