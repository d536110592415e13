"""nextworld: next-generation world models on one substrate.

Tensor conventions, used everywhere in the package:

- Frames on disk and at the user boundary are ``uint8 [T, H, W, C]`` (C = 3, RGB).
- Inside models frames are ``float [B, T, C, H, W]`` in ``[0, 1]``.
- Actions are ``[B, T]`` (discrete, int64) or ``[B, T, A]`` (continuous, float32).
  Action ``a_t`` is the one taken *after* observing frame ``t``; ``rewards[t]``,
  ``terminations[t]`` and ``truncations[t]`` are the outcome of ``a_t``.
"""

__version__ = "0.1.0"
