"""Shipped worlds: packaging (float16, size limit, staging), loading by name offline, and the cards."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

import nextworld.zoo as zoo
from nextworld.errors import UserInputError
from nextworld.play.world import World

REPO = Path(__file__).resolve().parents[1]
EVAL_KEYS = {"tokenizer_psnr", "tokenizer_ssim", "psnr_t1", "psnr_t4", "psnr_t10", "delta_psnr_t4", "action_nmi",
             "codebook_usage", "lam_codebook_usage", "frames_per_second"}

pytestmark = pytest.mark.usefixtures("one_thread")


def package_world_module():
    spec = importlib.util.spec_from_file_location("package_world", REPO / "scripts" / "package_world.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_package_a_world_in_float16_and_load_it_by_name(tiny_world: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    module = package_world_module()
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path / "zoo")
    monkeypatch.setattr(module, "ZOO_DIR", tmp_path / "zoo")
    (tmp_path / "zoo").mkdir()
    import torch

    target = module.package(tiny_world, "toy-world", torch.float16, max_mb=10, overwrite=False)
    with safe_open(str(target / "dynamics" / "model.safetensors"), "pt") as f:
        assert all(f.get_tensor(k).dtype in (torch.float16, torch.int64, torch.bool) for k in f.keys())
    assert zoo.shipped_worlds() == ["toy-world"] and not list((tmp_path / "zoo").glob(".*"))
    original, shipped = World.from_pretrained(tiny_world, seed=0), World.from_pretrained("toy-world", seed=0)
    prompt = np.zeros((16, 16, 3), np.uint8)
    original.reset(prompt)
    shipped.reset(prompt)
    assert shipped.step(1).shape == original.step(1).shape == (16, 16, 3)
    with pytest.raises(SystemExit, match="exists"):
        module.package(tiny_world, "toy-world", torch.float16, max_mb=10, overwrite=False)
    with pytest.raises(SystemExit, match="over the 0.001 MB limit"):
        module.package(tiny_world, "too-big", torch.float16, max_mb=0.001, overwrite=False)
    assert zoo.shipped_worlds() == ["toy-world"]  # the refused one left nothing behind


def test_names_from_clients_never_reach_the_file_system(tiny_world: Path) -> None:
    assert zoo.resolve_world(tiny_world) == tiny_world  # the command line may name a directory
    for name in (str(tiny_world), "../zoo", "coinrun-tiny/../x", "/etc", "a/b"):
        with pytest.raises(UserInputError, match="not a shipped world name"):
            zoo.resolve_world(name, allow_paths=False)


@pytest.mark.parametrize("name", zoo.shipped_worlds())
def test_every_shipped_world_is_small_loads_offline_and_carries_its_card(name: str) -> None:
    directory = zoo.ZOO_DIR / name
    size = sum(p.stat().st_size for p in directory.rglob("*.safetensors"))
    assert size <= 10_000_000, f"{name}: {size / 1e6:.1f} MB of weights"
    card = (directory / "README.md").read_text()
    metrics = json.loads((directory / "eval.json").read_text())
    assert EVAL_KEYS <= set(metrics) and "train genie --data" in card and "```json" in card
    world = World.from_pretrained(name)
    assert world.reset(np.zeros((64, 64, 3), np.uint8)).shape == world.frame_shape


def package_model_module():
    spec = importlib.util.spec_from_file_location("package_model", REPO / "scripts" / "package_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_package_a_single_checkpoint_and_resolve_it_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from nextworld.models.base import load_pretrained, save_pretrained
    from nextworld.models.jepa.world_model import JEPAWorldConfig, JEPAWorldModel

    module = package_model_module()
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path / "zoo")
    monkeypatch.setattr(module, "ZOO_DIR", tmp_path / "zoo")
    (tmp_path / "zoo").mkdir()
    model = JEPAWorldModel(JEPAWorldConfig(frame_shape=(16, 16, 3), widths=(4,), embed_dim=4, predictor_hidden=8,
                                           predictor_depth=1))
    run = save_pretrained(model, tmp_path / "run", "jepa", extra={"scratch": "not kept"})
    target = module.package(run, "toy-model", torch.float32, max_mb=10, overwrite=False)
    assert zoo.shipped_models() == ["toy-model"] and zoo.shipped_worlds() == []
    assert zoo.resolve_model("toy-model") == target
    assert "scratch" not in json.loads((target / "config.json").read_text())
    loaded = load_pretrained(zoo.resolve_model("toy-model"), family="jepa")
    frames = torch.rand(1, 1, 3, 16, 16)
    assert torch.equal(loaded.encode(frames), model.encode(frames))
    with pytest.raises(UserInputError, match="not a shipped world"):
        zoo.resolve_world("toy-model")  # a checkpoint is not a playable world
    for name in ("../zoo", "toy-model/..", "/etc"):
        with pytest.raises(UserInputError, match="not a shipped model name"):
            zoo.resolve_model(name, allow_paths=False)


@pytest.mark.parametrize("name", sorted(set(zoo.shipped_models()) - set(zoo.shipped_worlds())))
def test_every_shipped_checkpoint_is_small_loads_offline_and_carries_its_card(name: str) -> None:
    from nextworld.models.base import load_pretrained

    directory = zoo.ZOO_DIR / name
    assert (directory / "model.safetensors").stat().st_size <= 10_000_000
    card = (directory / "README.md").read_text()
    metrics = json.loads((directory / "eval.json").read_text())
    assert {"probe", "plan"} <= set(metrics) and "```json" in card and "train jepa --data" in card
    assert {"success_rate", "seconds_per_plan"} <= set(metrics["plan"])
    assert load_pretrained(directory).config.frame_shape == (64, 64, 3)


def test_the_card_names_the_keys_of_a_world_with_controls(tmp_path: Path) -> None:
    module = package_world_module()
    world = tmp_path / "toy-world"
    world.mkdir()
    metrics = {"action_map": [3, 1, 1, 7], "action_map_labelled_frames": 12, "action_map_accuracy": 0.25,
               "action_majority_baseline": 0.125, "data": str(tmp_path / "no-such-data")}
    assert module.keys_section(world, metrics) == ""  # no controls.json: no section
    (world / "controls.json").write_text(json.dumps({"ArrowLeft": 1, "ArrowRight": 3, "Space": 3}))
    section = module.keys_section(world, metrics)
    assert "← plays latent action 1 (mapped to real action 1)" in section
    assert "→ and Space play latent action 3 (mapped to real action 7)" in section
    assert "↑ and ↓ are unmapped" in section
    del metrics["action_map"]
    with pytest.raises(SystemExit, match="no action_map"):
        module.keys_section(world, metrics)
    assert "25.0% of held-out transitions" in section and "12.5%" in section


def test_the_card_says_how_the_world_samples(tmp_path: Path) -> None:
    module = package_world_module()
    (tmp_path / "world.json").write_text(json.dumps({"format": "nextworld-world", "family": "genie"}))
    assert module.sampling_section(tmp_path) == ""
    chosen = {"data": "val-split", "criterion": "highest psnr_t10, then fewer steps", "grid": []}
    (tmp_path / "world.json").write_text(json.dumps({"sampling": {"sample_steps": 2, "temperature": 0.5,
                                                                  "chosen_on": chosen}}))
    section = module.sampling_section(tmp_path)
    assert "2 MaskGIT step(s) at temperature 0.5" in section and "`val-split`" in section
    (tmp_path / "world.json").write_text(json.dumps({"sampling": {"sample_steps": 1, "temperature": 0,
                                                                  "keep_bias": 4.0}}))
    assert "1 MaskGIT step(s) at temperature 0, adding 4 to the log-probability of keeping" \
        in module.sampling_section(tmp_path)


def test_choose_sampling_takes_fewest_steps_then_lowest_temperature_then_the_best_keep_bias() -> None:
    spec = importlib.util.spec_from_file_location("choose_sampling", REPO / "scripts" / "choose_sampling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = [(1, 0.0, 0.0, 19.3), (1, 0.0, 4.0, 19.5), (1, 0.5, 4.0, 19.6), (2, 0.0, 0.0, 19.7), (8, 0.0, 0.0, 20.0)]
    grid = [{"sample_steps": s, "temperature": t, "keep_bias": b, "psnr_t10": p} for s, t, b, p in rows]
    chosen = module.choose(grid, "val", tolerance=0.5)
    assert (chosen["sample_steps"], chosen["temperature"], chosen["keep_bias"]) == (1, 0.0, 4.0)
    assert chosen["chosen_on"]["grid"] == grid
    chosen = module.choose(grid, "val", tolerance=0.2)  # within 0.2 dB of the best (20.0): 8 steps alone
    assert (chosen["sample_steps"], chosen["keep_bias"]) == (8, 0.0)
    old = [{k: v for k, v in row.items() if k != "keep_bias"} for row in grid]  # a grid from before keep biases
    assert module.choose(old, "val", tolerance=0.5)["keep_bias"] == 0.0
