"""Genie (Bruce et al. 2024): worlds learned from video alone.

Stage 1, the video tokenizer, is here: ``VideoTokenizer`` turns frames into grids of
discrete tokens and back. It is registered as the ``genie-tokenizer`` family, with named
configs in ``TOKENIZER_PRESETS``.
"""

from nextworld.models.base import register_family
from nextworld.models.genie.presets import TOKENIZER_PRESETS
from nextworld.models.genie.tokenizer import TokenizerConfig, VideoTokenizer

register_family("genie-tokenizer", TokenizerConfig, VideoTokenizer)

__all__ = ["TOKENIZER_PRESETS", "TokenizerConfig", "VideoTokenizer"]
