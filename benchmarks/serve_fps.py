"""Web player throughput (issue 6, point 8): frames per second per session with 1, 4 and 8 players.

Starts ``nextworld serve WORLD`` in a subprocess (the atlas off, so that only steps are
timed), then for each session count opens that many WebSocket clients at once. Each client
starts its world from the same prompt (uploaded as a player would) and then steps as fast as
the server answers: send an action, wait for its frame, send the next (actions cycle through
the world's latent actions). Frames are counted over ``--seconds`` after ``--warmup`` seconds.

The clients run in this process, on the same cores as the server (their work per frame is
decoding one small JSON message). The prompt is a synthetic CoinRun-like picture (sky, ground,
a block): a step's cost does not depend on what the frame shows.

    python benchmarks/serve_fps.py [--world coinrun-tiny] [--sessions 1,4,8] [--seconds 20] [--warmup 3]

Prints one JSON line per session count, then a summary table.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request

import numpy as np
import websockets
from PIL import Image


def prompt_png(size: int = 64) -> bytes:
    """A CoinRun-like picture: sky, brown ground, a grey block."""
    image = np.zeros((size, size, 3), np.uint8)
    image[:] = (120, 170, 230)
    image[size * 3 // 4:] = (120, 80, 40)
    image[size // 2:size * 3 // 4, size // 3:size // 2] = (140, 140, 140)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def start_server(world: str, max_sessions: int) -> tuple[subprocess.Popen, str]:
    """``nextworld serve`` on a free port; returns the process and its URL once it listens."""
    command = [sys.executable, "-m", "nextworld", "serve", world, "--port", "0", "--atlas-steps", "0",
               "--max-sessions", str(max_sessions)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if "http://" in line:
            return process, line[line.index("http://"):].split()[0]
    raise RuntimeError(f"nextworld serve exited ({process.wait()}) without serving")


async def play(url: str, png: bytes, start: float, warmup: float, seconds: float) -> dict:
    """One player: connect, start from the prompt, step as fast as frames come back."""
    ws_url = url.replace("http://", "ws://") + "ws"
    async with websockets.connect(ws_url, max_size=2**22) as ws:
        hello = json.loads(await ws.recv())
        request = urllib.request.Request(f"{url}api/sessions/{hello['session']}/prompt", data=png, method="POST",
                                         headers={"Content-Type": "image/png"})
        await asyncio.to_thread(lambda: urllib.request.urlopen(request).read())
        await ws.send(json.dumps({"type": "reset", "prompt": {"source": "upload"}}))
        assert json.loads(await ws.recv())["type"] == "frame"
        n, counted, server_ms = hello["world"]["actions"], 0, []
        while time.perf_counter() < start + warmup + seconds:
            await ws.send(json.dumps({"type": "action", "action": counted % n}))
            frame = json.loads(await ws.recv())
            assert frame["type"] == "frame", frame
            if time.perf_counter() >= start + warmup:
                counted += 1
                server_ms.append(frame["ms"])
        return {"frames": counted, "server_ms": statistics.median(server_ms) if server_ms else None}


async def measure(url: str, sessions: int, warmup: float, seconds: float) -> dict:
    png = prompt_png()
    start = time.perf_counter() + 1.0  # every client connected and reset before the clock starts
    results = await asyncio.gather(*(play(url, png, start, warmup, seconds) for _ in range(sessions)))
    per_session = [r["frames"] / seconds for r in results]
    return {"sessions": sessions, "fps_per_session_mean": statistics.mean(per_session),
            "fps_per_session_min": min(per_session), "fps_total": sum(per_session),
            "server_ms_per_step_median": statistics.median(r["server_ms"] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", default="coinrun-tiny")
    parser.add_argument("--sessions", default="1,4,8", help="comma-separated session counts")
    parser.add_argument("--seconds", type=float, default=20.0, help="counted seconds per session count")
    parser.add_argument("--warmup", type=float, default=3.0, help="uncounted seconds of stepping first")
    args = parser.parse_args()
    counts = [int(c) for c in args.sessions.split(",")]
    process, url = start_server(args.world, max(counts))
    rows = []
    try:
        for sessions in counts:
            row = asyncio.run(measure(url, sessions, args.warmup, args.seconds))
            row.update(world=args.world, seconds=args.seconds, machine=platform.machine(), cpus=os.cpu_count())
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        process.terminate()
        process.wait(timeout=30)
    print("\n| sessions | fps per session (mean) | fps per session (min) | fps in all | server ms per step (median) |")
    for r in rows:
        print(f"| {r['sessions']} | {r['fps_per_session_mean']:.1f} | {r['fps_per_session_min']:.1f} | "
              f"{r['fps_total']:.1f} | {r['server_ms_per_step_median']:.1f} |")


if __name__ == "__main__":
    main()
