"""Dreamer (DreamerV3, Hafner et al. 2023): the baseline the newer families are measured against.

``world_model.py``: the RSSM world model (pixels, actions, rewards, continuation) and its
WorldModel face; ``behavior.py``: the actor-critic trained in imagination, and
``DreamerAgent`` (family ``dreamer``), the two together. The online loop that collects
experience and trains them is ``nextworld.agents.dreamer``.
"""

from nextworld.models.base import register_family
from nextworld.models.dreamer.behavior import DreamerAgent
from nextworld.models.dreamer.world_model import DreamerConfig, DreamerWorldModel

register_family("dreamer", DreamerConfig, DreamerAgent)

__all__ = ["DreamerAgent", "DreamerConfig", "DreamerWorldModel"]
