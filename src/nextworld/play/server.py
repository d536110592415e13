"""``nextworld serve``: a learned world played in the browser.

A FastAPI app serves one page (``play/static``) and a WebSocket per player: actions and
settings go in as JSON messages, frames come out (docs/play.md has the whole protocol).
Every browser gets its own ``PlaySession`` on the served model, whose weights are loaded
once; model work runs in worker threads so that the event loop keeps answering everyone.

Any generative world plays here through ``play.world.World``: the server asks a world only
what it supports (its actions, its sampling settings, its ``controls.json``).

HTTP routes:

    GET  /                                    the page
    GET  /api/worlds                          the served world and the shipped ones a page may pick
    GET  /api/dataset                         the --data dataset: episodes, thumbnail picks
    GET  /api/dataset/frame?episode=E&frame=F one dataset frame as PNG
    POST /api/sessions/{id}/prompt            an image (raw body, at most 5 MB) as the next prompt
    GET  /api/sessions/{id}/recording.gif     the session's recording (also .mp4)
    WS   /ws?world=NAME                       play (NAME: a shipped world's name, never a path)
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import numpy as np
from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image

from nextworld.data.episodes import EpisodeDataset
from nextworld.errors import UserInputError
from nextworld.play.prompts import MAX_PROMPT_PIXELS, load_image
from nextworld.play.serve_config import ServeConfig, check_config
from nextworld.play.sessions import (RECORDING_FORMATS, PlaySession, ServedWorld, SessionRegistry,
                                     load_served_world, png_bytes)
from nextworld.zoo import resolve_world, shipped_worlds

STATIC_DIR = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 5_000_000
"""Largest prompt image a page may upload (5 MB); a larger one is refused with 413."""
MAX_MESSAGE_BYTES = 65_536
"""Largest WebSocket message the server reads (every message is a small JSON object)."""
THUMBNAILS = 8
"""Dataset frames the page offers as pictures to start from."""
MESSAGE_TYPES = ("action", "reset", "sampling", "record", "atlas")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
log = logging.getLogger(__name__)


def decode_upload(data: bytes, size: int) -> np.ndarray:
    """An uploaded picture as a world frame uint8 [size, size, 3]; HTTPException (413, 415, 400) if it is not one."""
    if not data:
        raise HTTPException(400, "upload: empty body; send the image file's bytes")
    try:
        with warnings.catch_warnings():  # a huge picture is refused below, before any pixel is decoded
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:  # reads the header only
                width, height = image.size
    except Image.DecompressionBombError:
        raise HTTPException(413, f"upload: over the {MAX_PROMPT_PIXELS / 1e6:.0f} megapixel limit for a prompt image") from None
    except OSError:
        raise HTTPException(415, "upload: not an image; send a PNG, JPEG, GIF, WebP or BMP picture") from None
    if width * height > MAX_PROMPT_PIXELS:
        raise HTTPException(413, f"upload: {width}x{height} is over the {MAX_PROMPT_PIXELS / 1e6:.0f} megapixel "
                                 f"limit for a prompt image")
    try:  # one loader for files and uploads
        return load_image(data, size, name="upload")
    except UserInputError as e:
        raise HTTPException(415, str(e)) from None


def parse_message(raw: dict[str, Any]) -> dict[str, Any]:
    """A received WebSocket message as a request object with a known ``type``, or UserInputError."""
    text = raw.get("text")
    if text is None:
        raise UserInputError("message: expected a JSON text message, got binary data")
    if len(text) > MAX_MESSAGE_BYTES:
        raise UserInputError(f"message: {len(text)} characters, over the {MAX_MESSAGE_BYTES} limit")
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        raise UserInputError(f"message: not JSON: {text[:80]!r}") from None
    kind = message.get("type") if isinstance(message, dict) else None
    if kind not in MESSAGE_TYPES:
        raise UserInputError(f"message: unknown type {kind!r}; expected an object whose type is one of "
                             f"{', '.join(MESSAGE_TYPES)}")
    return message


@dataclass
class Connection:
    """A session's WebSocket, with what the server keeps per connection."""

    ws: WebSocket
    session: PlaySession
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    atlas_task: asyncio.Task | None = None
    atlas_wanted: np.ndarray | None = None
    """Prompt frames whose atlas is still to draw (the latest request wins)."""

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:  # the atlas task sends too
            await self.ws.send_text(json.dumps(message))


class SecurityHeaders:
    """ASGI middleware: every HTTP response carries ``SECURITY_HEADERS``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      *((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items())]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class PlayServer:
    """The routes and the WebSocket protocol, over one served world, a dataset and the sessions."""

    def __init__(self, cfg: ServeConfig) -> None:
        check_config(cfg)
        self.cfg = cfg
        self.served = load_served_world(cfg.run, cfg.device, allow_paths=True)
        self.worlds: dict[str, ServedWorld] = {self.served.name: self.served}
        self.loading = asyncio.Lock()
        self.dataset: EpisodeDataset | None = None
        if cfg.data is not None:
            self.dataset = EpisodeDataset(cfg.data)
            shape = tuple(self.served.model.frame_shape)
            if tuple(self.dataset.frame_shape) != shape:
                raise UserInputError(f"--data {cfg.data}: frames are {'x'.join(map(str, self.dataset.frame_shape))}, "
                                     f"the world draws {'x'.join(map(str, shape))}")
        self.registry = SessionRegistry(cfg.max_sessions)

    # ------------------------------------------------------------------------ worlds and prompts

    async def world(self, name: str | None) -> ServedWorld:
        """The served world, or a shipped one by name (loaded once); never a path."""
        if name is None or name == self.served.name:
            return self.served
        async with self.loading:
            if name not in self.worlds:
                resolve_world(name, allow_paths=False)  # refuses paths before any work
                self.worlds[name] = await asyncio.to_thread(load_served_world, name, self.cfg.device, allow_paths=False)
        return self.worlds[name]

    def dataset_frame(self, episode: Any, frame: Any) -> np.ndarray:
        """One frame of the --data dataset, uint8 [1, H, W, 3]."""
        if self.dataset is None:
            raise UserInputError("dataset: the server was started without --data, so it offers no dataset frames")
        for name, value in (("episode", episode), ("frame", frame)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise UserInputError(f"dataset {name} {value!r}: expected an integer")
        if not 0 <= episode < len(self.dataset):
            raise UserInputError(f"dataset: no episode {episode} (it has episodes 0..{len(self.dataset) - 1})")
        length = self.dataset.episodes[episode].length
        if not 0 <= frame < length:
            raise UserInputError(f"dataset: episode {episode} has frames 0..{length - 1}, not frame {frame}")
        return self.dataset.read(episode, frame, frame + 1, keys=("frames",))["frames"]

    def session_of(self, session_id: str) -> PlaySession:
        session = self.registry.get(session_id)
        if session is None:
            raise HTTPException(404, "no such session (it was closed, or the page must be reloaded)")
        return session

    # ------------------------------------------------------------------------ HTTP

    async def index(self) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    async def list_worlds(self) -> dict[str, Any]:
        return {"default": self.served.name, "worlds": [self.served.name] + [w for w in shipped_worlds()
                                                                            if w != self.served.name]}

    async def describe_dataset(self) -> dict[str, Any]:
        if self.dataset is None:
            raise HTTPException(404, "the server was started without --data")
        n = len(self.dataset)
        k = min(THUMBNAILS, n)  # episodes spread evenly over the dataset
        episodes = sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})
        return {"episodes": n, "frame_shape": list(self.dataset.frame_shape),
                "lengths": [self.dataset.episodes[e].length for e in range(min(n, 10_000))],
                "thumbnails": [{"episode": e, "frame": 0} for e in episodes]}

    async def dataset_png(self, episode: int, frame: int) -> Response:
        try:
            image = await asyncio.to_thread(self.dataset_frame, episode, frame)
        except UserInputError as e:
            raise HTTPException(404 if self.dataset is None else 400, str(e)) from None
        return Response(png_bytes(image[0]), media_type="image/png")

    async def upload_prompt(self, session_id: str, request: Request) -> dict[str, Any]:
        session = self.session_of(session_id)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"upload: {int(declared) / 1e6:.1f} MB, over the "
                                     f"{MAX_UPLOAD_BYTES / 1e6:g} MB limit for a prompt image")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_UPLOAD_BYTES:
                raise HTTPException(413, f"upload: over the {MAX_UPLOAD_BYTES / 1e6:g} MB limit for a prompt image")
        size = session.world.frame_shape[0]
        session.upload = await asyncio.to_thread(decode_upload, bytes(body), size)
        return {"width": size, "height": size}

    async def download_recording(self, session_id: str, fmt: str) -> Response:
        session = self.session_of(session_id)
        try:
            data = await asyncio.to_thread(session.recording_file, fmt)
        except UserInputError as e:
            raise HTTPException(404 if fmt not in RECORDING_FORMATS else 409, str(e)) from None
        name = f"{session.world_name}-{time.strftime('%Y%m%d-%H%M%S')}.{fmt}"
        return Response(data, media_type="image/gif" if fmt == "gif" else "video/mp4",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    # ------------------------------------------------------------------------ the WebSocket

    async def play(self, ws: WebSocket) -> None:
        origin = ws.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != ws.headers.get("host"):
            await ws.close(code=1008, reason="cross-origin connection refused")
            return
        await ws.accept()
        try:
            world = await self.world(ws.query_params.get("world"))
        except UserInputError as e:
            await ws.send_text(json.dumps({"type": "error", "message": str(e)}))
            await ws.close(code=1008, reason="unknown world")
            return
        session = PlaySession(world.model, world.name, seed=self.cfg.seed,
                              max_record_frames=self.cfg.max_record_frames, atlas_steps=self.cfg.atlas_steps)
        try:
            self.registry.add(session)
        except UserInputError as e:
            await ws.send_text(json.dumps({"type": "error", "message": str(e)}))
            await ws.close(code=1013, reason="server full")
            return
        conn = Connection(ws, session)
        # the dataset's frames are offered to worlds that draw frames of their size
        dataset = self.dataset is not None and tuple(world.model.frame_shape) == tuple(self.dataset.frame_shape)
        try:
            await conn.send({"type": "hello", "session": session.id, "world": world.describe(), "dataset": dataset,
                             "limits": {"record_frames": self.cfg.max_record_frames, "upload_bytes": MAX_UPLOAD_BYTES,
                                        "idle_seconds": self.cfg.idle_timeout}})
            if dataset:
                await self.on_reset(conn, {"type": "reset", "prompt": {"source": "dataset", "episode": 0, "frame": 0}})
            await self.receive_loop(conn)
        except WebSocketDisconnect:
            pass  # the player left: the session is released below
        finally:
            self.registry.remove(session.id)
            if conn.atlas_task is not None:
                conn.atlas_task.cancel()

    async def receive_loop(self, conn: Connection) -> None:
        while True:
            try:
                message = await asyncio.wait_for(conn.ws.receive(), timeout=self.cfg.idle_timeout)
            except TimeoutError:
                await conn.send({"type": "error", "message": f"session closed after {self.cfg.idle_timeout:g} s "
                                                            f"without a message; reload the page to play again"})
                await conn.ws.close(code=4000, reason="idle")
                return
            if message["type"] == "websocket.disconnect":
                return
            kind = None
            try:
                request = parse_message(message)
                kind = request["type"]
                await getattr(self, f"on_{kind}")(conn, request)
            except UserInputError as e:
                await conn.send({"type": "error", "message": str(e), "about": kind})
            except WebSocketDisconnect:
                raise
            except Exception:  # a bug: keep the traceback in the log, and the session alive
                log.exception("serving session %s", conn.session.id)
                await conn.send({"type": "error", "message": "internal error (see the server's log)", "about": kind})

    async def send_frame(self, conn: Connection, frame: np.ndarray, action: Any, seconds: float) -> None:
        session = conn.session
        h, w, _ = frame.shape
        await conn.send({"type": "frame", "step": session.world.steps, "action": action, "width": w, "height": h,
                         "pixels": base64.b64encode(np.ascontiguousarray(frame).tobytes()).decode(),
                         "ms": round(seconds * 1000, 1),
                         "recorded": len(session.recording) if session.recording_on else None})

    async def on_action(self, conn: Connection, message: dict[str, Any]) -> None:
        session, action = conn.session, message.get("action")
        was_recording, start = session.recording_on, time.perf_counter()
        frame = await asyncio.to_thread(session.step, action)
        await self.send_frame(conn, frame, action, time.perf_counter() - start)
        if was_recording and not session.recording_on:
            await conn.send({"type": "recording", "on": False, "frames": len(session.recording),
                             "message": f"recording stopped at its limit of {session.max_record_frames} frames; "
                                        f"download it, or start a new one"})

    async def on_reset(self, conn: Connection, message: dict[str, Any]) -> None:
        session, prompt = conn.session, message.get("prompt")
        if prompt is None:
            frames = session.prompt
            if frames is None:
                raise UserInputError("reset: no prompt yet; pick a dataset frame, upload an image or draw a sketch")
        elif not isinstance(prompt, dict) or prompt.get("source") not in ("dataset", "upload"):
            raise UserInputError(f"reset: prompt {prompt!r} must be {{\"source\": \"dataset\", \"episode\": E, "
                                 f"\"frame\": F}} or {{\"source\": \"upload\"}}")
        elif prompt["source"] == "upload":
            if session.upload is None:
                raise UserInputError("reset: nothing uploaded yet; POST an image to /api/sessions/ID/prompt first")
            frames = session.upload[None]
        else:
            frames = await asyncio.to_thread(self.dataset_frame, prompt.get("episode"), prompt.get("frame"))
            if tuple(frames.shape[1:]) != tuple(session.world.frame_shape):
                raise UserInputError(f"reset: the dataset's frames are {'x'.join(map(str, frames.shape[1:]))}, "
                                     f"the world {session.world_name!r} draws "
                                     f"{'x'.join(map(str, session.world.frame_shape))}")
        start = time.perf_counter()
        frame = await asyncio.to_thread(session.reset, frames)
        await self.send_frame(conn, frame, None, time.perf_counter() - start)
        self.want_atlas(conn, frames)

    async def on_sampling(self, conn: Connection, message: dict[str, Any]) -> None:
        settings = conn.session.set_sampling(message.get("sample_steps"), message.get("temperature"),
                                             message.get("keep_bias"))
        await conn.send({"type": "sampling", **settings})

    async def on_record(self, conn: Connection, message: dict[str, Any]) -> None:
        on = message.get("on")
        if not isinstance(on, bool):
            raise UserInputError(f"record: 'on' must be true or false, not {on!r}")
        conn.session.record(on)
        await conn.send({"type": "recording", "on": conn.session.recording_on,
                         "frames": len(conn.session.recording)})

    async def on_atlas(self, conn: Connection, message: dict[str, Any]) -> None:
        frame = conn.session.world.frame
        if frame is None:
            raise UserInputError("atlas: the world has not started; start it from a prompt first")
        self.want_atlas(conn, frame[None])

    def want_atlas(self, conn: Connection, prompt: np.ndarray) -> None:
        """Draw the action atlas of ``prompt`` in the background (after any one being drawn)."""
        if self.cfg.atlas_steps == 0:
            return
        conn.atlas_wanted = prompt
        if conn.atlas_task is None or conn.atlas_task.done():
            conn.atlas_task = asyncio.create_task(self.draw_atlases(conn))

    async def draw_atlases(self, conn: Connection) -> None:
        while conn.atlas_wanted is not None:
            prompt, conn.atlas_wanted = conn.atlas_wanted, None
            try:
                png = await asyncio.to_thread(conn.session.atlas_png, prompt)
                await conn.send({"type": "atlas", "png": base64.b64encode(png).decode()})
            except WebSocketDisconnect:
                return
            except Exception:
                log.exception("drawing the atlas of session %s", conn.session.id)
                return


def create_app(cfg: ServeConfig) -> FastAPI:
    """The web player's app for ``cfg`` (the world and the dataset are loaded here, once)."""
    server = PlayServer(cfg)
    app = FastAPI(title="nextworld play", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server

    app.add_middleware(SecurityHeaders)
    app.add_api_route("/", server.index, methods=["GET"], include_in_schema=False)
    app.add_api_route("/api/worlds", server.list_worlds, methods=["GET"])
    app.add_api_route("/api/dataset", server.describe_dataset, methods=["GET"])
    app.add_api_route("/api/dataset/frame", server.dataset_png, methods=["GET"])
    app.add_api_route("/api/sessions/{session_id}/prompt", server.upload_prompt, methods=["POST"])
    app.add_api_route("/api/sessions/{session_id}/recording.{fmt}", server.download_recording, methods=["GET"])
    app.add_api_websocket_route("/ws", server.play)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def serve(cfg: ServeConfig, on_ready: Callable[[str], None] | None = None) -> None:
    """Load the world, listen on ``cfg.host:cfg.port`` and serve until interrupted (Ctrl-C).

    ``on_ready(url)`` is called once the port is bound, before the first request is taken.
    """
    import uvicorn

    app = create_app(cfg)
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    try:
        sock = socket.create_server((cfg.host, cfg.port), family=family)
    except (OSError, OverflowError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise UserInputError(f"--host {cfg.host} --port {cfg.port}: cannot listen there ({reason})") from None
    host, port = sock.getsockname()[:2]
    if on_ready is not None:
        on_ready(f"http://{f'[{host}]' if family == socket.AF_INET6 else host}:{port}/")
    config = uvicorn.Config(app, ws_max_size=MAX_MESSAGE_BYTES, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
