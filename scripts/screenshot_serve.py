"""Take the web player's picture for docs/play.md (docs/serve.png) in headless Chromium.

    python scripts/screenshot_serve.py --data HELDOUT [--world coinrun-tiny] [--out docs/serve.png]

Serves WORLD with ``--data`` (a held-out dataset's frames as prompts), opens the page, starts
from the third thumbnail, steps with the keys 7, 7, 5, 5, runs on action 3 while recording
for about two seconds, draws a sketch in the pad, and writes a full-page screenshot. Needs
Playwright and a Chromium binary (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import threading
from pathlib import Path

import uvicorn
from playwright.sync_api import expect, sync_playwright

from nextworld.play.server import ServeConfig, create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="dataset whose frames the page offers as prompts")
    parser.add_argument("--world", default="coinrun-tiny")
    parser.add_argument("--out", type=Path, default=Path("docs/serve.png"))
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("screenshot_serve: no chromium binary (apt-get install chromium)")
    app = create_app(ServeConfig(run=args.world, data=args.data))
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{sock.getsockname()[1]}/")
            world = page.locator("#world")
            expect(world).to_have_attribute("data-step", "0")
            page.locator("#thumbnails img").nth(2).click()
            expect(page.locator("#step-info")).to_have_text("step 0 (prompt)")
            for step, key in enumerate("7755", start=1):
                page.keyboard.press(key)
                expect(world).to_have_attribute("data-step", str(step))
            page.locator("#record").click()
            page.keyboard.press("3")
            page.locator("#run").click()
            page.wait_for_timeout(2000)
            page.locator("#run").click()
            page.locator("#palette button").nth(5).click()
            sketch = page.locator("#sketch")
            sketch.scroll_into_view_if_needed()
            box = sketch.bounding_box()
            page.mouse.move(box["x"] + 30, box["y"] + 200)
            page.mouse.down()
            for x, y in ((90, 120), (150, 170), (220, 60)):
                page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
            page.mouse.up()
            page.evaluate("() => window.scrollTo(0, 0)")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
