"""Every CLI verb end to end on a tiny budget, and the one-line exit-2 errors for bad input."""

from __future__ import annotations

import json
import shutil
import os
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from nextworld.cli import main
from nextworld.models.base import load_pretrained
from nextworld.models.genie.training import GenieTrainConfig, _measured_shifts
from test_ingest import moving_block_mp4

from cli_helpers import assert_one_line_error, run_cli



@pytest.fixture(scope="module")
def coinrun(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny CoinRun train and held-out datasets, collected through the CLI."""
    root = tmp_path_factory.mktemp("coinrun")
    for name, levels in (("train", "0:10000"), ("heldout", "100000:100100")):
        code = main(["collect", "coinrun", "--out", str(root / name), "--episodes", "6", "--levels", levels,
                     "--max-episode-steps", "40", "--num-envs", "4", "--no-progress"])
        assert code == 0
    return {"train": root / "train", "heldout": root / "heldout"}


def test_collect_and_info(coinrun: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["info", str(coinrun["heldout"]), "--verify", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 6 and summary["frame_shape"] == [64, 64, 3]
    assert 100000 <= summary["levels"][0] <= summary["levels"][1] < 100100
    assert summary["action_space"] == {"type": "discrete", "n": 15} and summary["verified"]
    assert summary["split"] == {"by": "level", "range": [100000, 100100]}


def test_collect_gym(tmp_path: Path) -> None:
    out = tmp_path / "grid"
    assert main(["collect", "gym:MiniGrid-Empty-5x5-v0", "--out", str(out), "--episodes", "2",
                 "--max-episode-steps", "10", "--no-progress"]) == 0
    assert json.loads((out / "meta.json").read_text())["num_episodes"] == 2


def test_ingest_lists_skipped_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    moving_block_mp4(videos / "good.mp4")
    (videos / "broken.mp4").write_bytes(os.urandom(2000))
    assert main(["ingest", str(videos), "--out", str(tmp_path / "ds"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "ingested 1 videos" in out and "broken.mp4" in out and "skipped 1 file" in out


def test_train_resume_eval(coinrun: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    common = ["train", "genie", "--data", str(coinrun["train"]), "--out", str(run), "--batch-size", "2",
              "--ckpt-every", "2", "--no-progress"]
    assert main([*common, "--steps", "2", "--stage", "tokenizer"]) == 0
    assert main([*common, "--steps", "3", "--resume"]) == 0  # tokenizer 2 -> 3, then lam and dynamics
    lines = (run / "tokenizer" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 3
    assert (run / "tokenizer" / "samples" / "tokenizer-0000003.png").is_file()
    # the tiny preset's LAM names camera shifts, so its dynamics is motion-compensated
    dynamics_config = json.loads((run / "dynamics" / "config.json").read_text())["config"]
    assert dynamics_config["copy_path"] and len(dynamics_config["action_shifts"]) == dynamics_config["num_actions"]
    # each action's shift is the one measured on the training clips, not the motion head's own choice
    measured = _measured_shifts(GenieTrainConfig(data=coinrun["train"], out=run), load_pretrained(run / "lam", "genie-lam"),
                                (64, 64, 3))
    assert [list(s) for s in dynamics_config["action_shifts"]] == measured.tolist()
    out_json = tmp_path / "eval" / "metrics.json"
    assert main(["eval", str(run), "--data", str(coinrun["heldout"]), "--json", str(out_json),
                 "--max-clips", "4", "--action-clips", "16", "--fps-steps", "2", "--no-progress"]) == 0
    metrics = json.loads(out_json.read_text())
    assert {"tokenizer_psnr", "tokenizer_ssim", "codebook_usage", "psnr_t1", "psnr_t4", "psnr_t10", "delta_psnr_t4",
            "action_nmi", "lam_codebook_usage", "frames_per_second"} <= set(metrics)
    assert 0 < metrics["tokenizer_psnr"] < 100 and 0 < metrics["codebook_usage"] <= 1
    assert Path(metrics["reconstructions"]).is_file()
    for stage in ("lam", "dynamics"):  # every stage trained, resumed and sampled
        assert json.loads((run / stage / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 3
        assert (run / stage / "samples" / f"{stage}-0000003.png").is_file()
    # the dynamics learned on this tokenizer: training it further is refused, the world stays intact
    assert main([*common, "--steps", "4", "--resume"]) == 2
    assert json.loads((run / "tokenizer" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 3
    changed = tmp_path / "changed"  # a tokenizer swapped under a trained dynamics: its resume is refused
    shutil.copytree(run, changed)
    weights = load_file(str(changed / "tokenizer" / "model.safetensors"))
    save_file({k: v + 1 if v.is_floating_point() else v for k, v in weights.items()},
              str(changed / "tokenizer" / "model.safetensors"))
    assert main(["train", "genie", "--data", str(coinrun["train"]), "--out", str(changed), "--stage", "dynamics",
                 "--steps", "4", "--resume", "--no-progress"]) == 2
    clip = tmp_path / "dream.gif"
    assert main(["dream", str(run), "--prompt", f"{coinrun['heldout']}:0:0", "--actions", "0,1,2,3",
                 "--out", str(clip)]) == 0
    assert clip.stat().st_size > 0


def test_bad_inputs_exit_2_with_one_line(tmp_path: Path, coinrun: dict[str, Path]) -> None:
    assert_one_line_error(run_cli("info", str(tmp_path / "missing")), "missing", "does not exist")
    assert_one_line_error(run_cli("collect", "gym:NoSuchEnv-v9", "--out", str(tmp_path / "x")),
                           "gym:NoSuchEnv-v9", "unknown Gymnasium environment id")
    assert not (tmp_path / "x").exists()
    not_ours = tmp_path / "not_ours"
    not_ours.mkdir()
    (not_ours / "config.json").write_text('{"architectures": ["Llama"]}')
    assert_one_line_error(run_cli("eval", str(not_ours), "--data", str(coinrun["heldout"])),
                           "not a nextworld checkpoint")
    assert_one_line_error(run_cli("frobnicate"), "unknown verb 'frobnicate'")


def test_training_on_wrong_frame_size_is_refused(tmp_path: Path, tiny_dataset: Path) -> None:
    assert_one_line_error(
        run_cli("train", "genie", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--steps", "1"),
        "frames are [16, 16, 3]", "needs [64, 64, 3]")
    assert not (tmp_path / "r").exists()


def test_corrupt_shard_and_mismatched_checkpoint_exit_2(tmp_path: Path, coinrun: dict[str, Path]) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(coinrun["train"], data)
    frames = data / "shards" / "000000" / "frames.npy"
    raw = bytearray(frames.read_bytes())
    raw[-10] ^= 0xFF
    frames.write_bytes(bytes(raw))
    result = run_cli("train", "genie", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "1")
    assert_one_line_error(result, "frames.npy: corrupt shard")
    assert not (tmp_path / "run").exists(), "a refused run must not leave a run directory"

    run = tmp_path / "good"
    assert main(["train", "genie", "--data", str(coinrun["train"]), "--out", str(run), "--steps", "1",
                 "--batch-size", "2", "--no-progress"]) == 0
    config_path = run / "tokenizer" / "config.json"
    config = json.loads(config_path.read_text())
    config["config"]["width"] = 32  # the weights were made for width 64
    config_path.write_text(json.dumps(config))
    assert_one_line_error(run_cli("eval", str(run), "--data", str(coinrun["heldout"])),
                           "model.safetensors: tensors do not match config.json")


def test_every_verb_names_an_arguments_dataclass():
    import dataclasses

    from nextworld.cli import VERBS, arguments_class

    entries = [e for v in VERBS.values() for e in (v.values() if isinstance(v, dict) else [v])]
    assert len(entries) == 10
    for path, runner in entries:
        assert dataclasses.is_dataclass(arguments_class(path)) and callable(runner)


def test_a_light_verb_does_not_load_torch(coinrun):
    import subprocess
    import sys

    script = ("import sys; from nextworld.cli import main; "
              f"code = main(['info', {str(coinrun['train'])!r}]); "
              "sys.exit(code or ('torch' in sys.modules and 3))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:] + " (exit 3: torch was imported)"
