"""The web player in a real browser (headless Chromium driven by Playwright): keys drive the world,
prompts start it (dataset frame, upload, sketch), a session records and downloads.

Skipped only where no Chromium binary exists (CI installs one: see .ci/run).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import uvicorn
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from conftest import make_dataset, make_world
from nextworld.play.prompts import load_image
from nextworld.play.server import ServeConfig, create_app
from nextworld.play.world import World

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).is_file()), None)
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)"),
              pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    world = make_world(tmp_path_factory.mktemp("browser") / "toy")
    (world / "controls.json").write_text(json.dumps({"ArrowRight": 2, "Space": 3}))
    return world


@pytest.fixture(scope="module")
def server(world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """The player at http://127.0.0.1:PORT/, served from a thread; yields (url, the PlayServer)."""
    dataset = make_dataset(tmp_path_factory.mktemp("browser") / "ds", [12, 7])
    with serving(ServeConfig(run=str(world_dir), data=dataset, atlas_steps=1)) as served:
        yield served


@contextmanager
def serving(config: ServeConfig) -> Iterator[tuple[str, Any]]:
    app = create_app(config)
    sock = socket.create_server(("127.0.0.1", 0))
    runner = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/", app.state.server
    finally:
        runner.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, server: tuple[str, Any]) -> Iterator[Page]:
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    refused_upload = "Failed to load resource: the server responded with a status of 415"  # a test's own doing
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and refused_upload not in m.text else None)
    page.goto(server[0])
    expect(page.locator("#world")).to_have_attribute("data-step", "0")  # --data: the first dataset frame
    yield page
    context.close()
    assert not errors, errors  # no script errors, no refused content (CSP)


def canvas_pixels(page: Page) -> np.ndarray:
    """The world canvas as drawn, uint8 [H, W, 3]."""
    data = page.evaluate("""() => { const c = document.getElementById('world');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }""")
    height, width = page.evaluate("() => [document.getElementById('world').height, document.getElementById('world').width]")
    return np.array(data, np.uint8).reshape(height, width, 4)[..., :3]


def frames_drawn(page: Page) -> int:
    return int(page.locator("#world").get_attribute("data-frames") or 0)


def wait_for_frames(page: Page, count: int) -> None:
    page.wait_for_function(f"() => Number(document.getElementById('world').dataset.frames) >= {count}")


def first_frame_of(world_dir: Path, prompt: np.ndarray) -> np.ndarray:
    """What a session (seed 0) draws first from a prompt uint8 [H, W, 3]."""
    return World.from_pretrained(world_dir, seed=0).reset(prompt, seed=0)


def test_keys_drive_the_world_drawn_large_and_crisp(page: Page) -> None:
    world = page.locator("#world")
    box = world.bounding_box()
    assert box["width"] >= 256 and box["width"] == box["height"]  # 16 pixels shown at least 16x
    assert world.evaluate("c => getComputedStyle(c).imageRendering") == "pixelated"
    before = canvas_pixels(page)
    page.keyboard.press("1")
    expect(world).to_have_attribute("data-step", "1")
    expect(page.locator("#step-info")).to_have_text("step 1 · a=1")
    assert not np.array_equal(canvas_pixels(page), before)
    page.keyboard.press("ArrowRight")  # controls.json: ArrowRight plays action 2
    expect(page.locator("#step-info")).to_have_text("step 2 · a=2")
    page.keyboard.press("Space")  # ... and Space action 3, without scrolling or pressing a button
    expect(page.locator("#step-info")).to_have_text("step 3 · a=3")
    page.keyboard.press("7")  # the world has actions 0..3
    expect(page.locator("#messages")).to_contain_text("the world has actions 0..3")
    expect(world).to_have_attribute("data-step", "3")

    page.locator("#run").click()  # runs on its own under the selected action, at up to 15 fps
    page.wait_for_function("() => Number(document.getElementById('world').dataset.step) >= 8")
    expect(page.locator("#fps")).to_have_text(re.compile(r"^[1-9]\d*\.\d fps · \d+ ms/step$"))
    page.locator("#run").click()
    paused = int(world.get_attribute("data-step"))
    page.wait_for_timeout(400)
    assert int(world.get_attribute("data-step")) <= paused + 1  # at most the step already in flight
    page.locator("#step").click()
    expect(world).not_to_have_attribute("data-step", str(paused))
    page.keyboard.press("r")
    expect(page.locator("#step-info")).to_have_text("step 0 (prompt)")


def test_settings_and_the_atlas_reach_this_session_only(page: Page, server: tuple[str, Any]) -> None:
    expect(page.locator("#sampling-panel")).to_be_visible()
    expect(page.locator("#keep-bias-label")).to_be_hidden()  # this world's dynamics keeps no tokens
    expect(page.locator("#atlas")).to_have_attribute("src", re.compile("^data:image/png;base64,"))
    page.locator("#sample-steps").fill("3")
    page.locator("#sample-steps").dispatch_event("change")
    session_id = page.evaluate("() => document.getElementById('download-gif').href.split('/').at(-2)")
    session = server[1].registry.get(session_id)
    page.wait_for_function("() => document.getElementById('sample-steps').value === '3'")
    page.keyboard.press("0")
    expect(page.locator("#world")).to_have_attribute("data-step", "1")
    assert session.world.model.sample_steps == 3 and server[1].served.model.sample_steps == 8


def test_a_world_that_keeps_tokens_shows_its_keep_bias(browser: Browser, tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "ds", [6])
    with serving(ServeConfig(run=str(make_world(tmp_path / "keeper", copy_path=True)), data=dataset,
                             atlas_steps=0)) as (url, played):
        context = browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        expect(page.locator("#keep-bias-label")).to_be_visible()
        expect(page.locator("#keep-bias")).to_have_value("0")
        page.locator("#keep-bias").fill("2.5")
        page.locator("#keep-bias").dispatch_event("change")
        session_id = page.evaluate("() => document.getElementById('download-gif').href.split('/').at(-2)")
        expect(page.locator("#world")).to_have_attribute("data-step", "0")
        page.keyboard.press("0")  # messages are handled in order: once this step is back, so is the setting
        expect(page.locator("#world")).to_have_attribute("data-step", "1")
        assert played.registry.get(session_id).world.model.keep_bias == 2.5 and played.served.model.keep_bias == 0
        context.close()
    assert not errors, errors


def test_an_uploaded_image_starts_the_world(page: Page, world_dir: Path, tmp_path: Path) -> None:
    picture = tmp_path / "prompt.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(picture)
    drawn = frames_drawn(page)
    page.locator("#upload").set_input_files(picture)
    wait_for_frames(page, drawn + 1)
    expect(page.locator("#step-info")).to_have_text("step 0 (prompt)")
    assert np.array_equal(canvas_pixels(page), first_frame_of(world_dir, load_image(picture, 16)))
    (tmp_path / "notes.txt").write_text("not a picture")
    page.locator("#upload").set_input_files(tmp_path / "notes.txt")
    expect(page.locator("#messages")).to_contain_text("415: upload: not an image")


def test_a_sketch_drawn_in_the_page_starts_the_world(page: Page, world_dir: Path, tmp_path: Path) -> None:
    page.locator("#palette button").nth(5).click()  # red
    sketch = page.locator("#sketch")
    sketch.scroll_into_view_if_needed()
    box = sketch.bounding_box()  # where the mouse must go, in the viewport
    page.mouse.move(box["x"] + 30, box["y"] + 40)
    page.mouse.down()
    for x, y in ((220, 60), (200, 220), (40, 200), (120, 120)):
        page.mouse.move(box["x"] + x, box["y"] + y, steps=5)
    page.mouse.up()
    drawn_url = page.evaluate("() => document.getElementById('sketch').toDataURL('image/png')")
    path = tmp_path / "sketch.png"
    path.write_bytes(base64.b64decode(drawn_url.split(",", 1)[1]))
    with Image.open(path) as picture:
        assert (np.asarray(picture.convert("RGB")) == (211, 58, 44)).all(axis=-1).sum() > 1000, "red ink on the paper"
    drawn = frames_drawn(page)
    page.locator("#sketch-start").click()
    wait_for_frames(page, drawn + 1)
    expect(page.locator("#step-info")).to_have_text("step 0 (prompt)")
    assert np.array_equal(canvas_pixels(page), first_frame_of(world_dir, load_image(path, 16)))


def test_a_recorded_session_downloads_as_gif_and_mp4(page: Page) -> None:
    page.locator("#record").click()
    expect(page.locator("#record-info")).to_have_text("recording: 1 frames")
    for key in ("1", "2", "3"):
        step = int(page.locator("#world").get_attribute("data-step"))
        page.keyboard.press(key)
        expect(page.locator("#world")).to_have_attribute("data-step", str(step + 1))
    page.locator("#record").click()
    expect(page.locator("#record-info")).to_have_text("4 frames recorded")
    with page.expect_download() as gif:
        page.locator("#download-gif").click()
    assert gif.value.suggested_filename.startswith("toy-") and gif.value.suggested_filename.endswith(".gif")
    with Image.open(gif.value.path()) as im:
        assert im.n_frames == 4
    with page.expect_download() as mp4:
        page.locator("#download-mp4").click()
    assert mp4.value.suggested_filename.endswith(".mp4") and Path(mp4.value.path()).stat().st_size > 0


def test_a_dataset_thumbnail_starts_the_world_from_that_frame(page: Page, world_dir: Path, server: tuple[str, Any]) -> None:
    thumbnails = page.locator("#thumbnails img")
    expect(thumbnails).to_have_count(2)
    page.keyboard.press("2")
    expect(page.locator("#world")).to_have_attribute("data-step", "1")
    drawn = frames_drawn(page)
    thumbnails.nth(1).click()
    wait_for_frames(page, drawn + 1)
    expect(page.locator("#step-info")).to_have_text("step 0 (prompt)")
    expected = first_frame_of(world_dir, server[1].dataset_frame(1, 0)[0])
    assert np.array_equal(canvas_pixels(page), expected)


def test_picking_another_world_opens_a_session_on_it(page: Page, tmp_path: Path) -> None:
    page.locator("#world-select").select_option("coinrun-tiny")
    expect(page.locator("#status")).to_have_text("connected · coinrun-tiny")
    expect(page.locator("#actions button")).to_have_count(8)
    expect(page.locator("#dataset-panel")).to_be_hidden()  # the dataset's 16x16 frames do not fit a 64x64 world
    expect(page.locator("#placeholder")).to_be_visible()
    Image.new("RGB", (64, 64), (120, 170, 230)).save(tmp_path / "sky.png")
    page.locator("#upload").set_input_files(tmp_path / "sky.png")
    expect(page.locator("#world")).to_have_attribute("width", "64")
    expect(page.locator("#placeholder")).to_be_hidden()
    page.keyboard.press("7")
    expect(page.locator("#step-info")).to_have_text("step 1 · a=7")
