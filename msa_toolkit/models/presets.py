"""Input dims and maximum lengths of the published feature releases, shared by model presets.

A model's preset merges one of these with its own published hyper-parameters,
e.g. ``{**MOSI_INPUTS, "fusion_depth": 2}``; model files import them from here
and never from a sibling model.
"""

from __future__ import annotations

__all__ = ["MOSI_INPUTS", "MOSEI_INPUTS", "MOSI_ALIGNED_INPUTS", "MOSEI_ALIGNED_INPUTS", "SIMS_INPUTS"]

#: unaligned CMU-MOSI as distributed by MMSA (BERT 768-d text, COVAREP-subset 5-d audio,
#: Facet 20-d vision); the defaults of ModelConfig
MOSI_INPUTS = {"text_dim": 768, "audio_dim": 5, "vision_dim": 20, "text_len": 50, "audio_len": 375, "vision_len": 500}
#: the same for unaligned CMU-MOSEI (74-d COVAREP, 35-d Facet)
MOSEI_INPUTS = {"text_dim": 768, "audio_dim": 74, "vision_dim": 35, "text_len": 50, "audio_len": 500,
                "vision_len": 500}
#: word-aligned CMU-MOSI of the MAG-BERT feature release (BERT 768, COVAREP 74, FACET 47, 50 steps),
#: used by the MMCL and MInD authors
MOSI_ALIGNED_INPUTS = {"text_dim": 768, "audio_dim": 74, "vision_dim": 47, "text_len": 50, "audio_len": 50,
                       "vision_len": 50}
#: the same release for CMU-MOSEI (FACET 35)
MOSEI_ALIGNED_INPUTS = {**MOSI_ALIGNED_INPUTS, "vision_dim": 35}
#: unaligned CH-SIMS as distributed by MMSA (Chinese BERT 768-d text, librosa 33-d audio, OpenFace 709-d vision;
#: 39 text tokens, 400 audio and 55 vision steps: MMSA's config_regression.json "sims" seq_lens/feature_dims)
SIMS_INPUTS = {"text_dim": 768, "audio_dim": 33, "vision_dim": 709, "text_len": 39, "audio_len": 400,
               "vision_len": 55}
