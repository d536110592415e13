"""What `nextworld eval` measures for JEPA runs: collapse and linear probes of the true state.

On held-out episodes that carry a hidden state label (Two-Rooms records ``position``):

- collapse: per-dimension std and effective rank of the embeddings of every frame;
- ``probe_r2_<label>``: a ridge probe fitted on the embeddings of the first half of the
  episodes, R² of the label on the second half;
- ``probe_r2_<label>_k<K>`` (action-conditioned models): the same probe (fitted on real
  embeddings) applied to K-step open-loop predictions ẑ_{t+K}, rolled out from z_t with the
  recorded actions, against the label at t + K. This is what a planner relies on: whether
  the predicted future still says where the agent will be.

The self-supervised video JEPA is probed on its target encoder's token features at each
tubelet step (flattened over space, since averaging over space would discard where things
are), against the label of the tubelet's first frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nextworld.data.episodes import EpisodeDataset
from nextworld.data.frames import to_model_frames
from nextworld.errors import UserInputError
from nextworld.eval.representation import collapse_metrics, fit_linear_probe, r2_score

HORIZONS = (1, 4, 8, 16)
"""Open-loop steps at which predictions are probed."""


def _episodes(data: EpisodeDataset, label: str, max_episodes: int) -> list[dict[str, np.ndarray]]:
    chosen = np.linspace(0, len(data) - 1, min(max_episodes, len(data))).round().astype(int)
    keys = ("frames", "actions", f"label_{label}")
    rows = []
    for e in dict.fromkeys(chosen.tolist()):
        rows.append(data.read(e, 0, data.episodes[e].length, keys=keys))
    return rows


def _split(n: int) -> tuple[slice, slice]:
    if n < 2:
        raise UserInputError("a probe needs at least 2 held-out episodes (one to fit, one to score)")
    return slice(0, n // 2), slice(n // 2, n)


@torch.no_grad()
def evaluate_jepa_world(model: torch.nn.Module, data: EpisodeDataset, *, label: str = "position",
                        max_episodes: int = 200, batch_frames: int = 1024,
                        device: torch.device | str = "cpu") -> dict[str, Any]:
    """Collapse and probe metrics of an action-conditioned JEPA (family ``jepa``) on ``data``."""
    episodes = _episodes(data, label, max_episodes)
    embeddings = []
    for ep in episodes:
        frames = torch.from_numpy(np.ascontiguousarray(ep["frames"]))
        z = torch.cat([model.encoder(to_model_frames(chunk).to(device)).cpu()
                       for chunk in frames.split(batch_frames)])  # (T, D)
        embeddings.append(z)
    fit_half, score_half = _split(len(episodes))
    labels = [torch.from_numpy(np.asarray(ep[f"label_{label}"], np.float64)).reshape(len(ep["frames"]), -1)
              for ep in episodes]
    metrics: dict[str, Any] = collapse_metrics(torch.cat(embeddings))
    probe = fit_linear_probe(torch.cat(embeddings[fit_half]), torch.cat(labels[fit_half]))
    metrics[f"probe_r2_{label}"] = r2_score(torch.cat(labels[score_half]),
                                            probe.predict(torch.cat(embeddings[score_half])))
    for k in HORIZONS:
        preds, targets = [], []
        for z, y, ep in zip(embeddings[score_half], labels[score_half], episodes[score_half]):
            t = z.shape[0] - k  # starts 0 .. T-k-1 have k recorded actions after them
            if t < 1:
                continue
            actions = torch.from_numpy(np.ascontiguousarray(ep["actions"]))
            windows = torch.stack([actions[s:s + k] for s in range(t)]).to(device)  # (t, k(, A))
            pred = model.rollout(z[:t].to(device), windows)[:, -1].cpu()  # (t, D)
            preds.append(pred)
            targets.append(y[k:k + t])
        if preds:
            metrics[f"probe_r2_{label}_k{k}"] = r2_score(torch.cat(targets), probe.predict(torch.cat(preds)))
    metrics["probe_episodes"] = len(episodes)
    return metrics


@torch.no_grad()
def evaluate_video_jepa(model: torch.nn.Module, data: EpisodeDataset, *, label: str = "position",
                        max_episodes: int = 200, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Collapse and probe metrics of a self-supervised video JEPA (family ``jepa-video``) on ``data``."""
    cfg = model.config
    episodes = _episodes(data, label, max_episodes)
    features, labels = [], []
    for ep in episodes:
        n = (len(ep["frames"]) // cfg.frames) * cfg.frames
        if n == 0:
            continue
        clips = torch.from_numpy(np.ascontiguousarray(ep["frames"][:n])).view(-1, cfg.frames, *ep["frames"].shape[1:])
        tokens = model.encode_tokens(to_model_frames(clips).to(device)).cpu()  # (clips, T', h, w, D)
        features.append(tokens.flatten(2).flatten(0, 1))  # (clips * T', h * w * D)
        y = np.asarray(ep[f"label_{label}"][:n:cfg.tubelet], np.float64)
        labels.append(torch.from_numpy(y).reshape(len(y), -1))
    if len(features) < 2:
        raise UserInputError(f"{data.root}: fewer than 2 episodes with {cfg.frames} frames to probe")
    fit_half, score_half = _split(len(features))
    pooled = torch.cat([f.view(f.shape[0], -1, cfg.dim).mean(1) for f in features])
    metrics: dict[str, Any] = collapse_metrics(pooled)
    probe = fit_linear_probe(torch.cat(features[fit_half]), torch.cat(labels[fit_half]), ridge=1e-1)
    metrics[f"probe_r2_{label}"] = r2_score(torch.cat(labels[score_half]),
                                            probe.predict(torch.cat(features[score_half])))
    metrics["probe_episodes"] = len(features)
    return metrics
