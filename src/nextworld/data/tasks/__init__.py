"""Built-in tasks: small simulated worlds made for evaluating world models.

Importing this package registers each task with Gymnasium (once, however often it is imported):

- ``nextworld/TwoRooms-v0``: Two-Rooms point navigation (PLDM's protocol), see ``tworooms.py``.
"""

import gymnasium as gym

from nextworld.data.tasks.tworooms import TWOROOMS_ID, TwoRoomsConfig, TwoRoomsEnv, make_tworooms

if TWOROOMS_ID not in gym.registry:
    # no max_episode_steps here: the env truncates by itself, so gym.make adds no TimeLimit
    gym.register(id=TWOROOMS_ID, entry_point="nextworld.data.tasks.tworooms:TwoRoomsEnv")

__all__ = ["TWOROOMS_ID", "TwoRoomsConfig", "TwoRoomsEnv", "make_tworooms"]
