"""config.json + model.safetensors: round trip, and every way a checkpoint can be wrong."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from nextworld.errors import UserInputError
from nextworld.models.base import load_pretrained, register_family, save_pretrained


@dataclass
class LinearConfig:
    width: int = 4
    depth: tuple[int, int] = (1, 2)


class LinearModel(nn.Module):
    def __init__(self, config: LinearConfig) -> None:
        super().__init__()
        self.config = config
        self.proj = nn.Linear(config.width, config.width)


register_family("test-linear", LinearConfig, LinearModel)


def test_round_trip(tmp_path: Path) -> None:
    model = LinearModel(LinearConfig(width=6, depth=(3, 4)))
    save_pretrained(model, tmp_path / "ckpt", "test-linear", extra={"train": {"steps": 3}})
    loaded = load_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config  # tuples survive JSON
    assert torch.equal(loaded.proj.weight, model.proj.weight)
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["train"] == {"steps": 3}
    assert not list((tmp_path / "ckpt").glob(".*tmp")), "temporary files left behind"


def test_not_our_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="config.json: missing"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UserInputError, match="not a nextworld checkpoint"):
        load_pretrained(tmp_path)


def test_wrong_family_and_unknown_family(tmp_path: Path) -> None:
    save_pretrained(LinearModel(LinearConfig()), tmp_path, "test-linear")
    with pytest.raises(UserInputError, match="a 'test-linear' checkpoint, expected 'genie-tokenizer'"):
        load_pretrained(tmp_path, family="genie-tokenizer")
    payload = json.loads((tmp_path / "config.json").read_text())
    payload["family"] = "no-such-family"
    (tmp_path / "config.json").write_text(json.dumps(payload))
    with pytest.raises(UserInputError, match="unknown model family 'no-such-family'"):
        load_pretrained(tmp_path)


def test_tensors_that_do_not_match_the_config(tmp_path: Path) -> None:
    save_pretrained(LinearModel(LinearConfig(width=4)), tmp_path, "test-linear")
    payload = json.loads((tmp_path / "config.json").read_text())
    payload["config"]["width"] = 5
    (tmp_path / "config.json").write_text(json.dumps(payload))
    with pytest.raises(UserInputError, match=r"tensors do not match config.json: shape of proj.bias is \[4\]"):
        load_pretrained(tmp_path)
    payload["config"]["colour"] = "red"
    (tmp_path / "config.json").write_text(json.dumps(payload))
    with pytest.raises(UserInputError, match=r"unknown fields \['colour'\]"):
        load_pretrained(tmp_path)


def test_corrupt_weights(tmp_path: Path) -> None:
    save_pretrained(LinearModel(LinearConfig()), tmp_path, "test-linear")
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(UserInputError, match="model.safetensors: not a readable safetensors file"):
        load_pretrained(tmp_path)
