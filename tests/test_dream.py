"""``nextworld dream``: prompts from files and datasets, dream videos, the action atlas, real beside dreamed."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from conftest import make_dataset
from nextworld.cli import main
from nextworld.data.episodes import EpisodeDataset
from nextworld.errors import UserInputError
from nextworld.play import prompts
from nextworld.play.dream import GAP, DreamConfig, dream
from nextworld.play.prompts import load_clip, load_prompt
from nextworld.play.world import World

SHAPE = (16, 16, 3)  # the tiny world's frames


def write_png_header(path: Path, width: int, height: int) -> Path:
    """A few-byte PNG that declares ``width`` x ``height`` pixels but holds almost none."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))
                     + chunk(b"IEND", b""))
    return path


def gif_frames(path: Path) -> list[np.ndarray]:
    with Image.open(path) as im:
        out = []
        for i in range(im.n_frames):
            im.seek(i)
            out.append(np.asarray(im.convert("RGB")))
        return out


def mp4_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


# ---------------------------------------------------------------------------- prompts


def test_images_of_any_format_and_mode_become_world_frames(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    cases = {"photo.png": photo, "photo.jpg": photo, "photo.webp": photo, "grey.png": photo.convert("L"),
             "palette.gif": photo.convert("P"), "clear.png": Image.new("RGBA", (20, 20), (0, 0, 0, 0))}
    for name, image in cases.items():
        image.save(tmp_path / name)
        frames = load_prompt(str(tmp_path / name), SHAPE)
        assert frames.shape == (1, 16, 16, 3) and frames.dtype == np.uint8, name
    assert (load_prompt(str(tmp_path / "clear.png"), SHAPE) == 255).all(), "transparency is laid on white"
    grey = load_prompt(str(tmp_path / "grey.png"), SHAPE)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_bad_image_prompts_are_refused_naming_the_file(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "notes.png").write_text("not a picture")
    (tmp_path / "empty.png").write_bytes(b"")
    cases = {
        "notes.png": "not an image",
        "empty.png": "empty file",
        "missing.png": "no such image file",
        "": "no such image file",
        write_png_header(tmp_path / "big.png", 7000, 7000).name: "49 megapixels, over the 40 megapixel limit",
        write_png_header(tmp_path / "bomb.png", 20000, 20000).name: "too large to decode safely",
    }
    for name, message in cases.items():
        spec = str(tmp_path / name) if name else ""
        with pytest.raises(UserInputError, match=message) as e:
            load_prompt(spec, SHAPE)
        assert spec in str(e.value) and "\n" not in str(e.value)
    Image.new("RGB", (40, 40)).save(tmp_path / "fine.png")
    monkeypatch.setattr(prompts, "MAX_PROMPT_BYTES", 10)
    with pytest.raises(UserInputError, match="fine.png: .* MB, over the .* MB limit"):
        load_prompt(str(tmp_path / "fine.png"), SHAPE)


def test_an_image_in_memory_loads_like_its_file_and_is_named_in_errors(tmp_path: Path) -> None:
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    photo.save(tmp_path / "photo.png")
    data = (tmp_path / "photo.png").read_bytes()
    np.testing.assert_array_equal(prompts.load_image(data, 16), prompts.load_image(tmp_path / "photo.png", 16))
    with pytest.raises(UserInputError, match="^prompt upload: not an image"):
        prompts.load_image(b"not a picture", 16, name="upload")
    with pytest.raises(UserInputError, match="^prompt upload: a damaged or truncated image"):
        prompts.load_image(data[:len(data) // 2], 16, name="upload")


def test_dataset_frames_as_prompts_and_clips(tmp_path: Path, tiny_dataset: Path) -> None:
    ds = EpisodeDataset(tiny_dataset)
    assert np.array_equal(load_prompt(f"{tiny_dataset}:2:7", SHAPE), ds.read(2, 7, 8)["frames"])
    clip = load_clip(tiny_dataset, 4, 30, 10)
    assert clip.shape == (10, 16, 16, 3) and np.array_equal(clip, ds.read(4, 30, 40)["frames"])
    for spec, message in [(f"{tiny_dataset}:6:0", "no episode 6"), (f"{tiny_dataset}:1:5", "not frame 5"),
                          (f"{tiny_dataset}:-1:0", "no episode -1"), (f"{tiny_dataset}:one:0", "integer"),
                          (str(tiny_dataset), "a directory")]:
        with pytest.raises(UserInputError, match=message):
            load_prompt(spec, SHAPE)
    with pytest.raises(UserInputError, match="a clip of 10 from frame 35 needs 45"):
        load_clip(tiny_dataset, 4, 35, 10)
    small = make_dataset(tmp_path / "small", [5], size=8)
    with pytest.raises(UserInputError, match="frames are 8x8x3, the world draws 16x16x3"):
        load_prompt(f"{small}:0:0", SHAPE)


# ---------------------------------------------------------------------------- dreams


def test_dream_writes_gif_and_mp4_with_every_frame(tmp_path: Path, tiny_world: Path, one_thread, capsys) -> None:
    Image.new("RGB", (40, 30), "orange").save(tmp_path / "p.jpg")
    args = ["dream", str(tiny_world), "--prompt", str(tmp_path / "p.jpg"), "--actions", "1,1,3,0,2",
            "--maskgit-steps", "2", "--scale", "3"]
    assert main([*args, "--out", str(tmp_path / "d.gif")]) == 0
    assert str(tmp_path / "d.gif") in capsys.readouterr().out
    gif = gif_frames(tmp_path / "d.gif")
    assert len(gif) == 6, "the prompt frame and one frame per action, repeats included"
    assert gif[0].shape[1] == 48 and gif[0].shape[0] > 48, "upscaled 3x, a caption strip beneath"
    assert main([*args, "--out", str(tmp_path / "d.mp4")]) == 0
    mp4 = mp4_frames(tmp_path / "d.mp4")
    assert len(mp4) == 6 and mp4[0].shape[1] == 48


def test_dream_is_deterministic_under_a_seed(tmp_path: Path, tiny_world: Path, one_thread) -> None:
    Image.new("RGB", (16, 16), "teal").save(tmp_path / "p.png")

    def dream_bytes(seed: int, name: str) -> bytes:
        cfg = DreamConfig(run=str(tiny_world), out=tmp_path / name, prompt=str(tmp_path / "p.png"),
                          actions="0,1,2,3", seed=seed, maskgit_steps=2)
        return dream(cfg).read_bytes()

    first = dream_bytes(0, "a.gif")
    assert dream_bytes(0, "b.gif") == first
    assert dream_bytes(1, "c.gif") != first


def test_atlas_shows_each_action_from_a_fresh_start(tmp_path: Path, tiny_world: Path, tiny_dataset: Path,
                                                    one_thread) -> None:
    Image.new("RGB", (20, 20), "red").save(tmp_path / "p.png")
    specs = [str(tmp_path / "p.png"), f"{tiny_dataset}:0:3", f"{tiny_dataset}:2:0"]
    cfg = DreamConfig(run=str(tiny_world), out=tmp_path / "atlas.png", atlas=True, atlas_prompts=";".join(specs),
                      atlas_steps=2, maskgit_steps=2, scale=2, seed=5)
    atlas = np.asarray(Image.open(dream(cfg)))
    side = 16 * 2
    header = atlas.shape[0] - 3 * (side + GAP)
    assert atlas.shape[1] == 5 * side + 4 * GAP, "prompt + 4 action columns"
    assert 8 <= header <= 30, "a header strip of labels above the three rows"
    world = World.from_pretrained(tiny_world, seed=5)
    world.model.sample_steps = 2
    world.reset(load_prompt(specs[1], SHAPE), seed=5)
    expected = [world.step(3) for _ in range(2)][-1].repeat(2, 0).repeat(2, 1)
    top, left = header + GAP + side + GAP, 4 * (side + GAP)  # row 1, column "action 3"
    assert np.array_equal(atlas[top:top + side, left:left + side], expected)


def test_side_by_side_pairs_a_real_clip_with_its_regeneration(tmp_path: Path, tiny_world: Path,
                                                               tiny_dataset: Path, one_thread) -> None:
    cfg = DreamConfig(run=str(tiny_world), out=tmp_path / "sbs.gif", side_by_side=True,
                      prompt=f"{tiny_dataset}:2:10", frames=7, maskgit_steps=2, scale=2)
    frames = gif_frames(dream(cfg))
    assert len(frames) == 7 and frames[0].shape[1] == 2 * 32 + GAP
    real = EpisodeDataset(tiny_dataset).read(2, 10, 17)["frames"]
    assert np.array_equal(frames[3][:32, :32], real[3].repeat(2, 0).repeat(2, 1)), "real on the left"
    cfg.prompt = f"{tiny_dataset}:2:30"
    with pytest.raises(UserInputError, match="a clip of 7 from frame 30 needs 37"):
        dream(cfg)
    cfg.prompt = str(tmp_path / "p.png")
    with pytest.raises(UserInputError, match="--side-by-side needs --prompt DATASET:episode:frame"):
        dream(cfg)


# ---------------------------------------------------------------------------- mistakes


def test_bad_actions_and_outputs_are_refused_before_any_work(tmp_path: Path, tiny_world: Path, capsys) -> None:
    Image.new("RGB", (16, 16)).save(tmp_path / "p.png")
    base = DreamConfig(run=str(tiny_world), out=tmp_path / "d.gif", prompt=str(tmp_path / "p.png"))
    for actions, message in [("1,7,9,2", "--actions: 7, 9 outside the world's latent actions 0..3"),
                             ("", "none given"), (None, "none given"), ("1,,2", "comma-separated integers"),
                             ("1,x", "comma-separated integers")]:
        base.actions = actions
        with pytest.raises(UserInputError, match=message):
            dream(base)
    assert main(["dream", str(tiny_world), "--prompt", str(tmp_path / "p.png"), "--actions", "1",
                 "--out", str(tmp_path / "d.avi")]) == 2
    expected = f"nextworld: error: --out {tmp_path / 'd.avi'}: expected a .gif or .mp4 file"
    assert capsys.readouterr().err.strip() == expected
    assert main(["dream", str(tiny_world), "--atlas", "--prompt", str(tmp_path / "p.png"),
                 "--out", str(tmp_path / "atlas.gif")]) == 2
    assert not list(tmp_path.glob("d.*")) and not list(tmp_path.glob("atlas*")) and not list(tmp_path.glob(".*.tmp"))


def test_cli_bad_action_is_one_line_exit_2(tmp_path: Path, tiny_world: Path) -> None:
    Image.new("RGB", (16, 16)).save(tmp_path / "p.png")
    result = subprocess.run([sys.executable, "-m", "nextworld", "dream", str(tiny_world), "--prompt",
                             str(tmp_path / "p.png"), "--actions", "0,4", "--out", str(tmp_path / "d.mp4")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "nextworld: error: --actions: 4 outside the world's latent actions 0..3"]
    assert not (tmp_path / "d.mp4").exists()
