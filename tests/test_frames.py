"""The one crossing between stored frames (uint8 [..., H, W, C]) and model frames (float [..., C, H, W])."""

from __future__ import annotations

import torch

from nextworld.data.frames import to_model_frames, to_stored_frames


def test_layouts_round_trip_exactly() -> None:
    stored = torch.randint(0, 256, (2, 3, 8, 9, 3), dtype=torch.uint8)  # [B, T, H, W, C]
    model = to_model_frames(stored)
    assert model.shape == (2, 3, 3, 8, 9) and model.dtype == torch.float32
    assert 0 <= model.min() and model.max() <= 1
    assert torch.equal(model[1, 2, 0], stored[1, 2, :, :, 0].float() / 255), "channels must move, not mix"
    assert torch.equal(to_stored_frames(model), stored)


def test_out_of_range_model_frames_are_clamped() -> None:
    x = torch.tensor([-0.5, 0.5, 1.7]).view(1, 3, 1, 1)  # [N, C, H, W]
    assert to_stored_frames(x).flatten().tolist() == [0, 128, 255]
