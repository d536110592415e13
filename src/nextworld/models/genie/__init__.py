"""Genie (Bruce et al. 2024): worlds learned from video alone.

Stage 1, the video tokenizer, is here: ``VideoTokenizer`` turns frames into grids of
discrete tokens and back. It is registered as the ``genie-tokenizer`` family, with named
configs in ``TOKENIZER_PRESETS``. Stage 3, the dynamics model, is ``GenieDynamics`` (the
``genie-dynamics`` family): a MaskGIT space-time transformer over those tokens. The latent
action model (stage 2), the training of stages 2-3 and playing a world come with issue 3.
"""

from nextworld.models.base import register_family
from nextworld.models.genie.dynamics import DynamicsConfig, GenieDynamics
from nextworld.models.genie.presets import TOKENIZER_PRESETS
from nextworld.models.genie.tokenizer import TokenizerConfig, VideoTokenizer

register_family("genie-tokenizer", TokenizerConfig, VideoTokenizer)
register_family("genie-dynamics", DynamicsConfig, GenieDynamics)

__all__ = ["TOKENIZER_PRESETS", "DynamicsConfig", "GenieDynamics", "TokenizerConfig", "VideoTokenizer"]
