"""Loader throughput: 16-frame 64×64 windows per second, against what a tiny training step eats.

Measures, on one dataset of real CoinRun frames:
1. random 16-frame window reads per second, cold (first pass) and warm (second pass), from
   containers holding the same frames: our memory-mapped .npy shards, HDF5 chunked (raw and
   gzip), compressed .npz per episode; this is how the container was chosen;
2. batches through torch's DataLoader (batch 8, 0 and 2 workers) from our format;
3. clips per second consumed by one step of the `tiny` Genie tokenizer (forward, backward, AdamW),
and prints the ratio loader / training, which should be at least 10.

    python benchmarks/loader_throughput.py [--data DIR] [--reads 2000]

Without --data it collects 60 CoinRun episodes into a temporary directory first. The
HDF5 rows need h5py (`pip install h5py`; not a nextworld dependency) and are skipped without it.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from nextworld.data.episodes import EpisodeDataset
from nextworld.data.windows import ClipDataset, WindowSpec

WINDOW = 16


def random_windows(ds: EpisodeDataset, n: int, seed: int = 0) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    long_enough = [e for e in ds.episodes if e.length >= WINDOW]
    picks = rng.integers(0, len(long_enough), n)
    return [(long_enough[p].index, int(rng.integers(0, long_enough[p].length - WINDOW + 1))) for p in picks]


def rate(fn, windows: list[tuple[int, int]]) -> dict[str, float]:
    """Windows per second on a first pass (cold: the reader's first touch of each page or
    chunk) and a second pass over the same windows (warm: steady state of a long run)."""
    out = {}
    for label in ("cold", "warm"):
        start = time.perf_counter()
        for episode, row in windows:
            frames = fn(episode, row)
            assert frames.shape == (WINDOW, 64, 64, 3)
        out[label] = len(windows) / (time.perf_counter() - start)
    return out


def bench_containers(ds: EpisodeDataset, windows: list[tuple[int, int]], tmp: Path) -> dict[str, dict[str, float]]:
    results = {"npy_mmap": rate(lambda e, s: ds.read(e, s, s + WINDOW, keys=("frames",))["frames"], windows)}
    try:
        import h5py
    except ImportError:
        h5py = None
    if h5py is not None:
        offsets = {}
        for compression in (None, "gzip"):
            path = tmp / f"frames-{compression}.h5"
            with h5py.File(path, "w") as f:
                out = f.create_dataset("frames", shape=(ds.num_frames, 64, 64, 3), dtype=np.uint8,
                                       chunks=(WINDOW, 64, 64, 3), compression=compression,
                                       compression_opts=1 if compression else None)
                row = 0
                for ref in ds.episodes:
                    out[row:row + ref.length] = ds.read(ref.index, keys=("frames",))["frames"]
                    offsets[ref.index] = row
                    row += ref.length
            f = h5py.File(path, "r")
            frames = f["frames"]
            results[f"hdf5_{compression or 'raw'}"] = rate(
                lambda e, s: frames[offsets[e] + s:offsets[e] + s + WINDOW], windows)
            f.close()
    npz_dir = tmp / "npz"
    npz_dir.mkdir()
    for ref in ds.episodes:
        np.savez_compressed(npz_dir / f"{ref.index}.npz", frames=ds.read(ref.index, keys=("frames",))["frames"])
    results["npz_compressed"] = rate(
        lambda e, s: np.load(npz_dir / f"{e}.npz")["frames"][s:s + WINDOW], windows[: max(50, len(windows) // 10)])
    return results


def bench_dataloader(ds: EpisodeDataset, workers: int, batches: int = 100) -> float:
    clips = ClipDataset(ds, WindowSpec(length=WINDOW))
    loader = DataLoader(clips, batch_size=8, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0), persistent_workers=workers > 0)
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * 8 / (time.perf_counter() - start)


def bench_tiny_step(steps: int = 5) -> tuple[float, float]:
    """Clips/s consumed by the tiny tokenizer's training step, and its seconds per step."""
    from nextworld.models.genie import TOKENIZER_PRESETS, VideoTokenizer

    torch.manual_seed(0)
    model = VideoTokenizer(TOKENIZER_PRESETS["tiny"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = {"frames": torch.randint(0, 256, (8, WINDOW, 64, 64, 3), dtype=torch.uint8)}
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()  # the first step warms up allocators
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = (time.perf_counter() - start) / steps
    return 8 / seconds, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a 64×64 dataset; default: collect CoinRun into a temp dir")
    parser.add_argument("--reads", type=int, default=2000, help="random windows read per container")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = args.data
        if data is None:
            from nextworld.data.sources.collect import CollectConfig, collect

            data = tmp / "coinrun"
            collect(CollectConfig(source="coinrun", out=data, episodes=60, levels="0:10000", policy="sticky",
                                  seed=0, progress=False))
        # Checksums verified once here, so that no timed read below includes hashing.
        ds = EpisodeDataset(data, verify="full")
        windows = random_windows(ds, args.reads)
        containers = bench_containers(ds, windows, tmp)
        loader = {f"dataloader_workers{w}": bench_dataloader(ds, w) for w in (0, 2)}
    train_rate, step_seconds = bench_tiny_step()
    best_loader = max(loader.values())
    result = {
        "dataset_frames": ds.num_frames,
        "windows_per_second": containers,
        "dataloader_clips_per_second": loader,
        "tiny_tokenizer_step_seconds": step_seconds,
        "tiny_tokenizer_clips_per_second": train_rate,
        "loader_over_training": best_loader / train_rate,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
    }
    print(json.dumps(result, indent=1))
    print(f"loader {best_loader:.0f} clips/s vs tiny training {train_rate:.1f} clips/s: "
          f"{best_loader / train_rate:.0f}x headroom")


if __name__ == "__main__":
    main()
