import pytest
import torch

from nextworld.data.camera import camera_shifts, covered, translate, translate_over


def _texture(seed: int = 0, size: int = 48) -> torch.Tensor:
    """A random smooth-ish RGB frame [3, H, W] with no two equal shifts."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False)[0]


def test_translate_moves_content_and_repeats_the_edge() -> None:
    a = torch.arange(16.0).reshape(1, 1, 4, 4)
    moved = translate(a, torch.tensor([[1, -2]]))[0, 0]
    # content moves down 1 and left 2: moved[y, x] == a[y - 1, x + 2], clamped at the edges
    assert moved[1, 0] == a[0, 0, 0, 2] and moved[3, 1] == a[0, 0, 2, 3]
    assert torch.equal(moved[0], moved[1])  # the uncovered top row repeats the edge
    assert torch.equal(moved[:, 2], moved[:, 3])  # so does the uncovered right column
    assert torch.equal(translate(a, torch.zeros(1, 2, dtype=torch.long)), a)


def test_covered_marks_what_translate_takes_from_real_content() -> None:
    mask = covered(torch.tensor([[1, -2], [0, 0]]), 4, 4)  # (2, 1, 4, 4)
    assert mask.shape == (2, 1, 4, 4) and mask[1].all()
    expected = torch.ones(4, 4, dtype=torch.bool)
    expected[0, :] = False  # the row uncovered by moving down 1
    expected[:, 2:] = False  # the columns uncovered by moving left 2
    assert torch.equal(mask[0, 0], expected)
    a, fill = torch.arange(16.0).reshape(1, 1, 4, 4), torch.full((1, 1, 4, 4), -1.0)
    over = translate_over(a, torch.tensor([[1, -2]]), fill)[0, 0]
    assert torch.equal(over[expected], translate(a, torch.tensor([[1, -2]]))[0, 0][expected])
    assert (over[~expected] == -1).all()  # the uncovered border takes the fill, not the repeated edge


def test_camera_shifts_recover_known_translations() -> None:
    frame = _texture()
    truth = torch.tensor([[0, 0], [2, -1], [-3, 4], [1, 1]])
    frames = [frame]
    for dy, dx in truth.tolist():
        frames.append(translate(frames[-1][None], torch.tensor([[dy, dx]]))[0])
    clip = torch.stack(frames)  # (T, C, H, W)
    assert torch.equal(camera_shifts(clip), truth)
    batched = torch.stack([clip, clip.flip(0)])  # the reversed clip moves back
    shifts = camera_shifts(batched)
    assert shifts.shape == (2, 4, 2)
    assert torch.equal(shifts[0], truth) and torch.equal(shifts[1], -truth.flip(0))


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        camera_shifts(torch.zeros(2, 3, 12, 12))
    with pytest.raises(ValueError, match="shifts"):
        translate(torch.zeros(2, 3, 8, 8), torch.zeros(3, 2))
