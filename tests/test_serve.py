"""``nextworld serve``'s API: the WebSocket protocol, sessions, prompts, recordings, and every bad input."""

from __future__ import annotations

import base64
import io
import json
import pickle
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import av
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from conftest import make_dataset, make_world
from test_dream import write_png_header
from nextworld.errors import UserInputError
from nextworld.models.genie.world import GenieWorld
from nextworld.play import world as world_module
from nextworld.play.server import MAX_UPLOAD_BYTES, ServeConfig, create_app, serve
from nextworld.play.world import World

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world(tmp_path_factory.mktemp("serve") / "toy")


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("serve") / "ds", [12, 5, 9])


@contextmanager
def client(run: Path | str, **options: Any) -> Iterator[TestClient]:
    options.setdefault("atlas_steps", 0)
    with TestClient(create_app(ServeConfig(run=str(run), **options))) as c:
        yield c


def receive(ws: Any, kind: str) -> dict[str, Any]:
    """The next message of type ``kind``, passing over the greeting and atlases (drawn in the background,
    sent when ready); any other message on the way fails the test."""
    while True:
        message = ws.receive_json()
        if message["type"] == kind:
            return message
        assert message["type"] in ("hello", "atlas"), message


def pixels(message: dict[str, Any]) -> np.ndarray:
    """A frame message's picture, uint8 [H, W, 3]."""
    return np.frombuffer(base64.b64decode(message["pixels"]), np.uint8).reshape(message["height"], message["width"], 3)


def png(image: np.ndarray | Image.Image) -> bytes:
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def wait_for(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# ---------------------------------------------------------------------------- playing


def test_the_page_and_its_files_are_served_with_safe_headers(world_dir: Path) -> None:
    with client(world_dir) as c:
        page = c.get("/")
        assert page.status_code == 200 and '<canvas id="world"' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for name in ("app.js", "style.css"):
            assert c.get(f"/static/{name}").status_code == 200
        assert "image-rendering: pixelated" in c.get("/static/style.css").text
        assert c.get("/api/worlds").json() == {"default": "toy", "worlds": ["toy", "coinrun-tiny"]}


def test_a_session_plays_the_world_exactly_as_world_does(world_dir: Path, dataset_dir: Path) -> None:
    with client(world_dir, data=dataset_dir, seed=3) as c, c.websocket_connect("/ws") as ws:
        hello = receive(ws, "hello")
        assert hello["world"] == {"name": "toy", "actions": 4, "frame_shape": [16, 16, 3], "key_map": {},
                                  "sampling": {"sample_steps": 8, "temperature": 1.0}}
        first = receive(ws, "frame")  # a server with --data starts every session on its first frame
        assert first["step"] == 0 and first["action"] is None
        ws.send_json({"type": "sampling", "sample_steps": 2, "temperature": 0.5})
        assert receive(ws, "sampling") == {"type": "sampling", "sample_steps": 2, "temperature": 0.5}
        ws.send_json({"type": "reset", "prompt": {"source": "dataset", "episode": 2, "frame": 4}})
        served = [pixels(receive(ws, "frame"))]
        for action in (1, 3, 3, 0, 2, 1, 1, 2):  # past the context window (6 frames): it slides
            ws.send_json({"type": "action", "action": action})
            message = receive(ws, "frame")
            assert message["action"] == action and message["ms"] >= 0
            served.append(pixels(message))
        assert message["step"] == 8

    world = World.from_pretrained(world_dir, seed=3)
    world.model.set_sampling(2, 0.5)
    prompt = make_dataset_frame(dataset_dir, 2, 4)
    expected = [world.reset(prompt, seed=3)] + [world.step(a) for a in (1, 3, 3, 0, 2, 1, 1, 2)]
    assert all(np.array_equal(a, b) for a, b in zip(served, expected, strict=True))


def test_a_world_that_keeps_tokens_offers_its_keep_bias(tmp_path: Path) -> None:
    with client(make_world(tmp_path / "keeper", copy_path=True), seed=3) as c, c.websocket_connect("/ws") as ws:
        assert receive(ws, "hello")["world"]["sampling"] == {"sample_steps": 8, "temperature": 1.0, "keep_bias": 0.0}
        ws.send_json({"type": "sampling", "keep_bias": 3.5})
        assert receive(ws, "sampling") == {"type": "sampling", "sample_steps": 8, "temperature": 1.0, "keep_bias": 3.5}
        session = next(iter(c.app.state.server.registry.sessions.values()))
        assert session.world.model.keep_bias == 3.5
        for bad, expected in ((float("inf"), "keep_bias inf must be a number in -100..100"),
                              (101, "keep_bias 101 must be a number in -100..100"), ("4", "keep_bias '4'")):
            ws.send_text(json.dumps({"type": "sampling", "keep_bias": bad}))
            assert expected in receive(ws, "error")["message"]
        assert session.world.model.keep_bias == 3.5  # a refused setting changes nothing


def make_dataset_frame(dataset: Path, episode: int, frame: int) -> np.ndarray:
    from nextworld.data.episodes import EpisodeDataset

    return EpisodeDataset(dataset).read(episode, frame, frame + 1)["frames"]


def test_sessions_have_their_own_state_and_settings_on_shared_weights(world_dir: Path, dataset_dir: Path) -> None:
    with client(world_dir, data=dataset_dir) as c:
        server = c.app.state.server
        with c.websocket_connect("/ws") as a, c.websocket_connect("/ws") as b:
            receive(a, "frame"), receive(b, "frame")
            a.send_json({"type": "sampling", "temperature": 0.0})
            receive(a, "sampling")
            a.send_json({"type": "action", "action": 1})
            assert receive(a, "frame")["step"] == 1
            b.send_json({"type": "reset", "prompt": {"source": "dataset", "episode": 1, "frame": 0}})
            assert receive(b, "frame")["step"] == 0
            sessions = list(server.registry.sessions.values())
            assert len(sessions) == 2
            models = [s.world.model for s in sessions]
            assert sorted(m.temperature for m in models) == [0.0, 1.0]  # a's setting did not reach b
            assert server.served.model.temperature == 1.0
            shared = [m.dynamics.head.weight.data_ptr() for m in models]
            assert shared[0] == shared[1] == server.served.model.dynamics.head.weight.data_ptr()
        wait_for(lambda: len(server.registry) == 0)  # released on close


def test_sessions_stepping_at_once_play_what_each_would_alone(world_dir: Path, dataset_dir: Path) -> None:
    actions = [1, 3, 0, 2, 2, 1, 3, 0]
    with client(world_dir, data=dataset_dir) as c, c.websocket_connect("/ws") as a, c.websocket_connect("/ws") as b:
        played: dict[str, list[np.ndarray]] = {"a": [pixels(receive(a, "frame"))], "b": [pixels(receive(b, "frame"))]}
        for action in actions:  # both requests in flight together: the two steps run in worker threads at once
            a.send_json({"type": "action", "action": action})
            b.send_json({"type": "action", "action": action})
            played["a"].append(pixels(receive(a, "frame")))
            played["b"].append(pixels(receive(b, "frame")))
    world = World.from_pretrained(world_dir, seed=0)
    alone = [world.reset(make_dataset_frame(dataset_dir, 0, 0), seed=0)] + [world.step(x) for x in actions]
    for frames in played.values():
        assert all(np.array_equal(x, y) for x, y in zip(frames, alone, strict=True))


def test_a_full_server_refuses_and_a_closed_session_frees_its_place(world_dir: Path) -> None:
    with client(world_dir, max_sessions=1) as c:
        with c.websocket_connect("/ws") as first:
            receive(first, "hello")
            with c.websocket_connect("/ws") as second:
                assert "the server is full (1 sessions are playing)" in receive(second, "error")["message"]
                with pytest.raises(WebSocketDisconnect) as closed:
                    second.receive_json()
                assert closed.value.code == 1013
        wait_for(lambda: len(c.app.state.server.registry) == 0)
        with c.websocket_connect("/ws") as third:
            assert receive(third, "hello")["session"]


def test_an_idle_session_is_closed_and_released(world_dir: Path) -> None:
    with client(world_dir, idle_timeout=0.3) as c, c.websocket_connect("/ws") as ws:
        receive(ws, "hello")
        assert "session closed after 0.3 s without a message" in receive(ws, "error")["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 4000
        wait_for(lambda: len(c.app.state.server.registry) == 0)


def test_the_atlas_shows_each_action_from_the_prompt(world_dir: Path, dataset_dir: Path) -> None:
    with client(world_dir, data=dataset_dir, atlas_steps=1) as c, c.websocket_connect("/ws") as ws:
        receive(ws, "frame")  # the prompt, then its atlas once drawn
        atlas = Image.open(io.BytesIO(base64.b64decode(receive(ws, "atlas")["png"])))
        assert atlas.width == 5 * 16 * 4 + 4 * 2  # the prompt and 4 actions, each 16 px scaled by 4, 2 px apart
        ws.send_json({"type": "action", "action": 2})
        receive(ws, "frame")
        ws.send_json({"type": "atlas"})  # redrawn from the current frame
        assert receive(ws, "atlas")["png"]


# ---------------------------------------------------------------------------- prompts


def test_an_uploaded_image_or_sketch_starts_the_world(world_dir: Path) -> None:
    rng = np.random.default_rng(0)
    with client(world_dir) as c, c.websocket_connect("/ws") as ws:
        session = receive(ws, "hello")["session"]
        ws.send_json({"type": "reset"})
        assert "no prompt yet" in receive(ws, "error")["message"]
        ws.send_json({"type": "reset", "prompt": {"source": "upload"}})
        assert "nothing uploaded yet" in receive(ws, "error")["message"]
        photo = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
        response = c.post(f"/api/sessions/{session}/prompt", content=png(photo), headers={"content-type": "image/png"})
        assert response.status_code == 200 and response.json() == {"width": 16, "height": 16}
        ws.send_json({"type": "reset", "prompt": {"source": "upload"}})
        assert receive(ws, "frame")["step"] == 0
        sketch = Image.new("RGBA", (256, 256), (0, 0, 0, 0))  # a transparent sketch is drawn on white paper
        sketch.paste((200, 30, 30, 255), (40, 40, 120, 120))
        assert c.post(f"/api/sessions/{session}/prompt", content=png(sketch)).status_code == 200
        ws.send_json({"type": "reset", "prompt": {"source": "upload"}})
        assert receive(ws, "frame")["step"] == 0
        ws.send_json({"type": "action", "action": 0})
        assert receive(ws, "frame")["step"] == 1
        ws.send_json({"type": "reset"})  # a reset with no prompt restarts from the last one
        assert receive(ws, "frame")["step"] == 0


def test_dataset_frames_are_offered_as_prompts(world_dir: Path, dataset_dir: Path) -> None:
    with client(world_dir, data=dataset_dir) as c:
        info = c.get("/api/dataset").json()
        assert info["episodes"] == 3 and info["lengths"] == [12, 5, 9]
        assert info["thumbnails"] == [{"episode": e, "frame": 0} for e in (0, 1, 2)]
        frame = np.asarray(Image.open(io.BytesIO(c.get("/api/dataset/frame?episode=2&frame=4").content)))
        assert np.array_equal(frame, make_dataset_frame(dataset_dir, 2, 4)[0])
        bad = c.get("/api/dataset/frame?episode=1&frame=5")
        assert bad.status_code == 400 and "episode 1 has frames 0..4, not frame 5" in bad.json()["detail"]
    with client(world_dir) as c:
        assert c.get("/api/dataset").status_code == 404
        assert c.get("/api/dataset/frame?episode=0&frame=0").status_code == 404
    other = make_dataset(dataset_dir.parent / "big", [3], size=32)
    with pytest.raises(UserInputError, match="frames are 32x32x3, the world draws 16x16x3"):
        create_app(ServeConfig(run=str(world_dir), data=other))


# ---------------------------------------------------------------------------- bad input


def test_bad_messages_get_an_error_and_the_session_lives_on(world_dir: Path, dataset_dir: Path) -> None:
    cases = [
        ("not json", "message: not JSON"),
        ("[1, 2]", "unknown type None"),
        ({"action": 1}, "unknown type None"),
        ({"type": "jump"}, "unknown type 'jump'"),
        ({"type": ["action"]}, "unknown type ['action']"),
        ({"type": "action", "action": 4}, "action 4: outside the world's actions 0..3"),
        ({"type": "action", "action": -1}, "action -1: outside"),
        ({"type": "action", "action": "2"}, "action '2': outside"),
        ({"type": "action", "action": 1.5}, "action 1.5: outside"),
        ({"type": "action", "action": True}, "action True: outside"),
        ({"type": "action"}, "action None: outside"),
        ({"type": "sampling", "sample_steps": 0}, "sample_steps 0 must be an integer in 1..64"),
        ({"type": "sampling", "sample_steps": 10**9}, "must be an integer in 1..64"),
        ({"type": "sampling", "temperature": -1}, "temperature -1 must be a number in 0..10"),
        ({"type": "sampling", "temperature": "hot"}, "temperature 'hot'"),
        ({"type": "sampling", "keep_bias": 2}, "the world 'toy' has no keep bias"),
        ({"type": "record", "on": "yes"}, "record: 'on' must be true or false"),
        ({"type": "reset", "prompt": "sketch.png"}, "reset: prompt 'sketch.png' must be"),
        ({"type": "reset", "prompt": {"source": "file", "path": "/etc/passwd"}}, "must be"),
        ({"type": "reset", "prompt": {"source": "dataset", "episode": 7, "frame": 0}}, "no episode 7"),
        ({"type": "reset", "prompt": {"source": "dataset", "episode": "0", "frame": 0}}, "expected an integer"),
    ]
    with client(world_dir, data=dataset_dir) as c, c.websocket_connect("/ws") as ws:
        receive(ws, "frame")
        for message, expected in cases:
            ws.send_text(message if isinstance(message, str) else json.dumps(message))
            error = receive(ws, "error")
            assert expected in error["message"], (message, error)
        ws.send_bytes(b"\x00\x01")
        assert "expected a JSON text message" in receive(ws, "error")["message"]
        ws.send_text(json.dumps({"type": "action", "action": 1, "pad": "x" * 70_000}))
        assert "over the 65536 limit" in receive(ws, "error")["message"]
        ws.send_json({"type": "action", "action": 3})
        assert receive(ws, "frame")["step"] == 1  # still playing


def test_a_bug_while_stepping_is_logged_and_the_session_lives_on(world_dir: Path, dataset_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    from nextworld.play.sessions import PlaySession

    step = PlaySession.step
    calls = []

    def broken_once(self: PlaySession, action: Any) -> np.ndarray:
        calls.append(action)
        if len(calls) == 1:
            raise ValueError("a bug")
        return step(self, action)

    monkeypatch.setattr(PlaySession, "step", broken_once)
    with client(world_dir, data=dataset_dir) as c, c.websocket_connect("/ws") as ws:
        receive(ws, "frame")
        ws.send_json({"type": "action", "action": 1})
        assert receive(ws, "error") == {"type": "error", "message": "internal error (see the server's log)",
                                        "about": "action"}
        ws.send_json({"type": "action", "action": 1})
        assert receive(ws, "frame")["step"] == 1
    assert "ValueError: a bug" in caplog.text


def test_uploads_over_5_mb_or_not_images_are_refused(world_dir: Path, tmp_path: Path) -> None:
    with client(world_dir) as c, c.websocket_connect("/ws") as ws:
        url = f"/api/sessions/{receive(ws, 'hello')['session']}/prompt"
        big = c.post(url, content=b"\x89PNG" + bytes(MAX_UPLOAD_BYTES))
        assert big.status_code == 413 and "over the 5 MB limit" in big.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts as it reads
            for _ in range(6):
                yield bytes(1_000_000)

        assert c.post(url, content=chunks()).status_code == 413
        text = c.post(url, content=b"hello, world", headers={"content-type": "image/png"})
        assert text.status_code == 415 and text.json()["detail"] == \
            "upload: not an image; send a PNG, JPEG, GIF, WebP or BMP picture"
        truncated = c.post(url, content=png(np.zeros((64, 64, 3), np.uint8))[:60])
        assert truncated.status_code == 415 and "upload" in truncated.json()["detail"]
        assert "/tmp" not in truncated.json()["detail"]
        assert c.post(url, content=b"").status_code == 400
        for side in (10_000, 100_000):  # a few bytes that declare too many pixels: refused before decoding
            bomb = write_png_header(tmp_path / f"bomb{side}.png", side, side).read_bytes()
            refused = c.post(url, content=bomb)
            assert refused.status_code == 413 and "over the 40 megapixel limit" in refused.json()["detail"]
        assert c.post("/api/sessions/not-a-session/prompt", content=png(np.zeros((8, 8, 3), np.uint8))).status_code == 404
        ws.send_json({"type": "reset", "prompt": {"source": "upload"}})
        assert "nothing uploaded yet" in receive(ws, "error")["message"]  # nothing refused was kept


def test_world_names_from_the_page_are_never_paths(world_dir: Path) -> None:
    with client(world_dir) as c:
        for name in ("../toy", str(world_dir), "/etc", "coinrun-tiny/../toy", "no-such-world"):
            with c.websocket_connect(f"/ws?world={name}") as ws:
                assert "not a shipped world name" in receive(ws, "error")["message"], name
                with pytest.raises(WebSocketDisconnect) as closed:
                    ws.receive_json()
                assert closed.value.code == 1008
        with c.websocket_connect("/ws?world=coinrun-tiny") as ws:  # a shipped name: loaded once, then shared
            assert receive(ws, "hello")["world"]["actions"] == 8
        model = c.app.state.server.worlds["coinrun-tiny"].model
        with c.websocket_connect("/ws?world=coinrun-tiny") as ws:
            receive(ws, "hello")
            assert c.app.state.server.worlds["coinrun-tiny"].model is model


def test_a_cross_site_page_cannot_open_a_session(world_dir: Path) -> None:
    with client(world_dir) as c:
        with pytest.raises(WebSocketDisconnect) as refused:
            with c.websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws:
                ws.receive_json()
        assert refused.value.code == 1008
        with c.websocket_connect("/ws", headers={"origin": "http://testserver"}) as ws:
            assert receive(ws, "hello")


def test_bad_settings_are_refused_before_serving(world_dir: Path, tmp_path: Path) -> None:
    for options, message in [({"port": 70000}, "--port 70000"), ({"max_sessions": 0}, "--max-sessions 0"),
                             ({"idle_timeout": 0}, "--idle-timeout 0"), ({"atlas_steps": -1}, "--atlas-steps -1"),
                             ({"max_record_frames": 0}, "--max-record-frames 0")]:
        with pytest.raises(UserInputError, match=message):
            create_app(ServeConfig(run=str(world_dir), **options))
    with pytest.raises(UserInputError, match="not a shipped world"):
        create_app(ServeConfig(run="no-such-world"))
    with pytest.raises(UserInputError, match="dataset directory does not exist"):
        create_app(ServeConfig(run=str(world_dir), data=tmp_path / "nothing"))
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        with pytest.raises(UserInputError, match="cannot listen there"):
            serve(ServeConfig(run=str(world_dir), port=taken.getsockname()[1]))


# ---------------------------------------------------------------------------- recording


def test_a_recording_downloads_as_gif_and_mp4_with_captions_and_stops_at_its_limit(
        world_dir: Path, dataset_dir: Path) -> None:
    with client(world_dir, data=dataset_dir, max_record_frames=4) as c, c.websocket_connect("/ws") as ws:
        session = receive(ws, "hello")["session"]
        receive(ws, "frame")
        base = f"/api/sessions/{session}/recording"
        nothing = c.get(f"{base}.gif")
        assert nothing.status_code == 409 and "nothing recorded yet" in nothing.json()["detail"]
        assert c.get(f"{base}.avi").status_code == 404
        ws.send_json({"type": "record", "on": True})
        assert receive(ws, "recording") == {"type": "recording", "on": True, "frames": 1}
        for action, recorded in ((1, 2), (2, 3)):
            ws.send_json({"type": "action", "action": action})
            assert receive(ws, "frame")["recorded"] == recorded
        ws.send_json({"type": "action", "action": 3})
        assert receive(ws, "frame")["recorded"] is None  # the fourth frame filled it
        stopped = receive(ws, "recording")
        assert stopped["on"] is False and stopped["frames"] == 4
        assert "recording stopped at its limit of 4 frames" in stopped["message"]
        ws.send_json({"type": "action", "action": 0})
        receive(ws, "frame")
        gif = c.get(f"{base}.gif")
        assert gif.headers["content-type"] == "image/gif"
        assert gif.headers["content-disposition"].startswith('attachment; filename="toy-')
        with Image.open(io.BytesIO(gif.content)) as im:
            assert im.n_frames == 4 and im.width == 256 and im.height > 256  # upscaled 16x, a caption beneath
            captions = []
            for i in range(im.n_frames):
                im.seek(i)
                captions.append(np.asarray(im.convert("L"))[256:])
        assert all(caption.min() < 100 for caption in captions), "text on every caption strip"
        assert not np.array_equal(captions[1], captions[2]), "each caption names its step and action"
        mp4 = c.get(f"{base}.mp4")
        assert mp4.headers["content-type"] == "video/mp4"
        with av.open(io.BytesIO(mp4.content)) as container:
            assert len(list(container.decode(video=0))) == 4
        assert c.get("/api/sessions/someone-else/recording.gif").status_code == 404


# ---------------------------------------------------------------------------- what a world supports


def test_a_world_names_its_keys_in_controls_json(tmp_path: Path) -> None:
    world = make_world(tmp_path / "keyed")
    (world / "controls.json").write_text(json.dumps({"ArrowLeft": 1, "ArrowRight": 2, "Space": 3}))
    with client(world) as c, c.websocket_connect("/ws") as ws:
        assert receive(ws, "hello")["world"]["key_map"] == {"ArrowLeft": 1, "ArrowRight": 2, "Space": 3}
    for bad, message in [({"ArrowLeft": 4}, "ArrowLeft -> 4 is not one of the world's actions 0..3"),
                         ({"KeyW": 1}, "key 'KeyW' cannot be mapped"), ([1, 2], "expected an object"),
                         ({"Space": True}, "Space -> True")]:
        (world / "controls.json").write_text(json.dumps(bad))
        with pytest.raises(UserInputError, match=message):
            create_app(ServeConfig(run=str(world)))


class PlainWorld:
    """A generative world with no sampling settings (the face a non-Genie family shows)."""

    def __init__(self, inner: GenieWorld) -> None:
        self.inner = inner
        self.action_space, self.frame_shape, self.device = inner.action_space, inner.frame_shape, inner.device

    def encode(self, frames: torch.Tensor) -> Any:
        return self.inner.encode(frames)

    def step(self, state: Any, action: torch.Tensor, generator: torch.Generator | None = None) -> Any:
        return self.inner.step(state, action, generator)

    def decode(self, state: Any) -> torch.Tensor:
        return self.inner.decode(state)


def test_any_registered_world_family_plays_and_unsupported_settings_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world(tmp_path / "plain")
    (world / "world.json").write_text(json.dumps({"format": "nextworld-world", "family": "plain"}))
    monkeypatch.setitem(world_module.WORLD_LOADERS, "plain",
                        lambda directory, device: PlainWorld(GenieWorld.from_run(directory, device)))
    with client(world) as c, c.websocket_connect("/ws") as ws:
        session = receive(ws, "hello")
        assert session["world"]["sampling"] is None  # the page hides its sampling controls
        ws.send_json({"type": "sampling", "temperature": 0.5})
        assert "the world 'plain' has no sampling settings" in receive(ws, "error")["message"]
        c.post(f"/api/sessions/{session['session']}/prompt", content=png(np.zeros((16, 16, 3), np.uint8)))
        ws.send_json({"type": "reset", "prompt": {"source": "upload"}})
        receive(ws, "frame")
        ws.send_json({"type": "action", "action": 2})
        assert receive(ws, "frame")["step"] == 1


def test_serving_never_unpickles(world_dir: Path, dataset_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("unpickling")

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    with client(world_dir, data=dataset_dir, atlas_steps=1) as c, c.websocket_connect("/ws") as ws:
        session = receive(ws, "hello")["session"]
        receive(ws, "frame")
        ws.send_json({"type": "record", "on": True})
        receive(ws, "recording")
        ws.send_json({"type": "action", "action": 1})
        receive(ws, "frame")
        c.post(f"/api/sessions/{session}/prompt", content=png(np.zeros((20, 20, 3), np.uint8)))
        ws.send_json({"type": "reset", "prompt": {"source": "upload"}})
        receive(ws, "frame")
        assert c.get(f"/api/sessions/{session}/recording.gif").status_code == 200


# ---------------------------------------------------------------------------- the command


def test_nextworld_serve_end_to_end_and_its_mistakes(world_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from websockets.sync.client import connect

    from cli_helpers import REPO
    from nextworld.cli import main

    for args, message in [(["../no-such-world"], "world '../no-such-world': no such directory"),
                          ([str(world_dir), "--port", "70000"], "--port 70000: must lie in 0..65535")]:
        assert main(["serve", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("nextworld: error: ") and message in err and "\n" not in err
    process = subprocess.Popen([sys.executable, "-m", "nextworld", "serve", str(world_dir), "--port", "0"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith(f"playing {world_dir} at http://127.0.0.1:"), line
        url = line.split(" at ", 1)[1].split()[0]
        with urllib.request.urlopen(url, timeout=30) as page:
            assert b'<canvas id="world"' in page.read()
        with connect(url.replace("http://", "ws://") + "ws", origin=url.rstrip("/")) as ws:
            hello = json.loads(ws.recv(timeout=30))
            request = urllib.request.Request(f"{url}api/sessions/{hello['session']}/prompt", method="POST",
                                             data=png(np.zeros((16, 16, 3), np.uint8)))
            urllib.request.urlopen(request, timeout=30).close()
            ws.send(json.dumps({"type": "reset", "prompt": {"source": "upload"}}))
            assert json.loads(ws.recv(timeout=30))["type"] == "frame"
            ws.send(json.dumps({"type": "action", "action": 3}))
            assert json.loads(ws.recv(timeout=30))["step"] == 1
        process.send_signal(signal.SIGINT)  # Ctrl-C stops it, as it stops every verb
        assert process.wait(timeout=30) == 130
        assert process.stderr.read().strip() == "nextworld: interrupted"
    finally:
        process.kill()
        process.wait()


def test_a_dreamer_run_is_served_like_any_world(tmp_path: Path) -> None:
    from nextworld.models.base import save_pretrained
    from nextworld.models.dreamer import DreamerAgent, DreamerConfig

    run = tmp_path / "dreamer"
    cfg = DreamerConfig(depth=4, deter=16, hidden=16, stoch=4, classes=4, units=16, layers=1, num_bins=15,
                        frame_size=16, action_space={"type": "discrete", "n": 3})
    save_pretrained(DreamerAgent(cfg), run, "dreamer")
    (run / "world.json").write_text(json.dumps({"format": "nextworld-world", "family": "dreamer"}))
    (run / "controls.json").write_text(json.dumps({"ArrowLeft": 0, "ArrowRight": 1, "ArrowUp": 2}))
    with client(run) as c, c.websocket_connect("/ws") as ws:
        session = receive(ws, "hello")
        assert session["world"]["sampling"] is None and session["world"]["actions"] == 3
        c.post(f"/api/sessions/{session['session']}/prompt", content=png(np.full((16, 16, 3), 90, np.uint8)))
        ws.send_json({"type": "reset", "prompt": {"source": "upload"}})
        first = receive(ws, "frame")
        ws.send_json({"type": "action", "action": 2})
        second = receive(ws, "frame")
        assert second["step"] == 1 and pixels(second).shape == pixels(first).shape == (16, 16, 3)
        ws.send_json({"type": "action", "action": 3})
        assert "action 3" in receive(ws, "error")["message"]


def test_keys_come_from_a_fitted_latent_to_real_action_map() -> None:
    from nextworld.play.controls import PROCGEN_KEY_ACTIONS, controls_from_action_map

    # latent 2 -> RIGHT (7), latent 0 -> RIGHT+UP (8), latent 1 -> LEFT+DOWN (0), latent 3 -> a no-op key (9)
    controls = controls_from_action_map([8, 0, 7, 9], PROCGEN_KEY_ACTIONS)
    assert controls == {"ArrowRight": 2, "ArrowLeft": 1, "ArrowUp": 0, "ArrowDown": 1, "Space": 0}
    assert controls_from_action_map([9, 9], PROCGEN_KEY_ACTIONS) == {}  # nothing maps to a key's meaning
