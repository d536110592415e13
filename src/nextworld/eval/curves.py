"""Learning curves as PNG pictures, drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from nextworld.atomic_files import write_atomic

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]


def save_curves(series: dict[str, list[tuple[float, float]]], path: str | Path, *, title: str, x_label: str,
                y_range: tuple[float, float] | None = None, size: tuple[int, int] = (640, 360)) -> Path:
    """Write line charts of ``series`` (name -> [(x, y), ...]) on shared axes as a PNG, atomically.

    ``y_range`` fixes the vertical axis (e.g. (0, 1) for success rates); otherwise it spans the data.
    """
    width, height = size
    left, right, top, bottom = 56, 16, 28, 40
    points = [p for values in series.values() for p in values]
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((left, 6), title, fill="black", font=font)
    if points:
        x0, x1 = 0.0, max(max(x for x, _ in points), 1e-9)
        y0, y1 = y_range if y_range is not None else (min(y for _, y in points), max(y for _, y in points))
        if y1 <= y0:
            y1 = y0 + 1.0

        def at(x: float, y: float) -> tuple[float, float]:
            return (left + (x - x0) / (x1 - x0) * (width - left - right),
                    height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom))

        draw.rectangle([left, top, width - right, height - bottom], outline=(160, 160, 160))
        for k in range(5):
            y = y0 + k * (y1 - y0) / 4
            _, py = at(x0, y)
            draw.line([left, py, width - right, py], fill=(230, 230, 230))
            draw.text((4, py - 6), f"{y:.3g}", fill="black", font=font)
        for k in range(5):
            x = x0 + k * (x1 - x0) / 4
            px, _ = at(x, y0)
            draw.text((px - 12, height - bottom + 4), f"{x:,.0f}", fill="black", font=font)
        draw.text((width // 2 - 30, height - 16), x_label, fill="black", font=font)
        for i, (name, values) in enumerate(series.items()):
            colour = COLOURS[i % len(COLOURS)]
            xy = [at(x, y) for x, y in sorted(values)]
            if len(xy) > 1:
                draw.line(xy, fill=colour, width=2)
            for px, py in xy:
                draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
            draw.text((left + 8 + 170 * i, top + 4), name, fill=colour, font=font)
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))
