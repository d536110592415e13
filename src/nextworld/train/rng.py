"""Random generator state (python, numpy, torch CPU and CUDA) as named tensors.

Holding the state as tensors lets a checkpoint store it in safetensors (never pickle)
and lets data-parallel ranks gather theirs to the main process with one collective.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def derive_seed(seed: int, *key: int) -> int:
    """A 64-bit seed for the stream ``key`` (e.g. a rank) of the run seeded ``seed``.

    Distinct ``(seed, *key)`` give unrelated seeds (numpy's SeedSequence spawn keys), where
    ``seed + rank`` would give seed 1 rank 0 the stream of seed 0 rank 1. ``seed`` >= 0.
    """
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1, np.uint64)[0])


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global generator and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng(device: torch.device) -> dict[str, torch.Tensor]:
    """The current state of every global generator this process uses, as CPU tensors."""
    _, py_words, py_gauss = random.getstate()  # (version, 624 MT words + position, cached gaussian)
    _, np_key, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": torch.tensor(py_words, dtype=torch.int64),  # [625]
        "python_gauss": torch.tensor([py_gauss is not None, py_gauss or 0.0], dtype=torch.float64),
        "numpy_key": torch.from_numpy(np_key.astype(np.int64)),  # [624]
        "numpy_rest": torch.tensor([np_pos, np_has_gauss, np_gauss], dtype=torch.float64),
        "torch": torch.get_rng_state(),  # uint8
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Set every global generator back to a state from :func:`capture_rng`."""
    has_gauss, gauss = state["python_gauss"].tolist()
    random.setstate((3, tuple(state["python"].tolist()), gauss if has_gauss else None))
    pos, np_has_gauss, np_gauss = state["numpy_rest"].tolist()
    np.random.set_state(("MT19937", state["numpy_key"].numpy().astype(np.uint32), int(pos), int(np_has_gauss),
                         np_gauss))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
