"""JEPA (LeCun 2022; I-JEPA, V-JEPA, V-JEPA 2-AC): predict the representation of the future.

``world_model.py`` (family ``jepa``): an action-conditioned world model, encoder -> z_t,
predictor(z_t, a_t) -> ẑ_{t+1}, trained on open-loop rollouts with a chosen collapse
prevention (``regularizers.py``), optional reward and inverse-dynamics heads; planners in
``nextworld.planning`` roll it forward to reach a goal embedding. ``video_jepa.py`` (family
``jepa-video``): self-supervised V-JEPA on frames alone, with multi-block masks
(``masks.py``) and an EMA target encoder. ``training.py`` trains either on the shared engine.
"""

from nextworld.models.base import register_family
from nextworld.models.jepa.video_jepa import VideoJEPA, VideoJEPAConfig
from nextworld.models.jepa.world_model import JEPAWorldConfig, JEPAWorldModel

register_family("jepa", JEPAWorldConfig, JEPAWorldModel)

__all__ = ["JEPAWorldConfig", "JEPAWorldModel", "VideoJEPA", "VideoJEPAConfig"]
