"""Learning-rate schedule, optimizer parameter groups and TrainConfig checks."""

from __future__ import annotations

import pytest
import torch

from nextworld.errors import UserInputError
from nextworld.train import TrainConfig, lr_at
from nextworld.train.optim import build_optimizer
from train_helpers import make_model


def test_lr_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    cfg = TrainConfig(steps=110, lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-4)  # warmup start: lr / warmup_steps
    assert lr_at(4, cfg) == pytest.approx(5e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)  # last warmup step reaches the peak
    assert lr_at(10, cfg) == pytest.approx(1e-3)  # cosine starts at the peak
    assert lr_at(60, cfg) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))  # halfway: the midpoint
    assert lr_at(110, cfg) == pytest.approx(1e-4)  # lr * min_lr_ratio at `steps`
    assert lr_at(500, cfg) == pytest.approx(1e-4)
    decay = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_lr_without_warmup_starts_at_the_peak():
    cfg = TrainConfig(steps=10, lr=2e-3, warmup_steps=0, min_lr_ratio=0.0)
    assert lr_at(0, cfg) == pytest.approx(2e-3)
    assert lr_at(5, cfg) == pytest.approx(1e-3)
    assert lr_at(10, cfg) == pytest.approx(0.0, abs=1e-12)


def test_weight_decay_applies_to_matrices_only():
    model = make_model()
    opt = build_optimizer(model, TrainConfig(weight_decay=0.5), torch.device("cpu"))
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.5 for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (p.ndim >= 2), name
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


@pytest.mark.parametrize("field,value,world", [("batch_size", 6, 4), ("grad_accum", 3, 1), ("steps", 0, 1),
                                               ("lr", -1.0, 1), ("min_lr_ratio", 1.5, 1)])
def test_config_check_names_the_bad_field(field, value, world):
    cfg = TrainConfig(**{field: value})
    with pytest.raises(UserInputError, match=field):
        cfg.check(world_size=world)
