"""Genie (Bruce et al. 2024): worlds learned from video alone.

Stage 1, the video tokenizer, is here: ``VideoTokenizer`` turns frames into grids of
discrete tokens and back. It is registered as the ``genie-tokenizer`` family, with named
configs in ``TOKENIZER_PRESETS``. Stage 2, the latent action model, is ``LatentActionModel``
(``genie-lam``): it infers a discrete action between frames without labels. Stage 3, the
dynamics model, is ``GenieDynamics`` (``genie-dynamics``): a MaskGIT space-time transformer over
the tokens, conditioned on latent actions. ``training.py`` trains the stages in order on the
shared engine; ``world.py`` (``GenieWorld``) puts the three behind the WorldModel face, which
``nextworld.play`` plays, dreams and serves.
"""

from nextworld.models.base import register_family
from nextworld.models.genie.dynamics import DynamicsConfig, GenieDynamics
from nextworld.models.genie.latent_actions import LatentActionConfig, LatentActionModel
from nextworld.models.genie.presets import TOKENIZER_PRESETS
from nextworld.models.genie.tokenizer import TokenizerConfig, VideoTokenizer

register_family("genie-tokenizer", TokenizerConfig, VideoTokenizer)
register_family("genie-lam", LatentActionConfig, LatentActionModel)
register_family("genie-dynamics", DynamicsConfig, GenieDynamics)

__all__ = ["TOKENIZER_PRESETS", "DynamicsConfig", "GenieDynamics", "LatentActionConfig", "LatentActionModel",
           "TokenizerConfig", "VideoTokenizer"]
