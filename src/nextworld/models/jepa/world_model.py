"""An action-conditioned JEPA world model: predict the next *embedding*, not the next frame.

Following LeCun 2022 and V-JEPA 2-AC, in PLDM's form (Sobal et al. 2025)::

    z_t = encoder(o_t)                      float [B, D]
    ẑ_{t+1} = ẑ_t + predictor(ẑ_t, a_t)      ẑ_0 = z_0, rolled out open loop for K steps
    loss = mean_t,d (ẑ_t - target_t)²  + collapse prevention (+ optional heads)

Clips are ``K + 1`` frames with the K actions between them (``a_t`` is taken after frame
``t``). The open-loop rollout is what a planner does with the model, so training on it keeps
errors from compounding unseen.

``regularizer`` chooses the collapse prevention (``regularizers.py``): ``vicreg`` and
``sigreg`` regularise the online embeddings and let gradients reach the targets; ``ema``
takes targets from an EMA copy of the encoder under stop-gradient.

``objective="generative"`` is the control for the seed question "generative versus JEPA at
equal compute": the same encoder and predictor, but a decoder turns each predicted
embedding into pixels and the loss is the pixel error, so the embedding is whatever serves
reconstruction. Nothing else changes.

Optional heads: ``reward_head`` predicts r_t from ẑ_{t+1} (a planner can maximise it);
``inverse_dynamics`` predicts a_t from (z_t, z_{t+1}), which keeps the embedding about what the
agent controls (PLDM's IDM term).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nextworld.data.frames import to_model_frames
from nextworld.errors import UserInputError
from nextworld.models.base import Prediction
from nextworld.models.jepa.regularizers import covariance_loss, sigreg_loss, temporal_smoothness, variance_loss
from nextworld.nn.ema import ema_decay, ema_update, make_target


@dataclass
class JEPAWorldConfig:
    """An action-conditioned JEPA (or its generative control); see the module docstring."""

    frame_shape: tuple[int, int, int] = (64, 64, 3)
    """Frames the model reads, (H, W, C); H and W divisible by input_pool * 2 ** len(widths)."""
    input_pool: int = 1
    """Average-pool frames by this factor before the encoder (and the generative decoder's target):
    Two-Rooms' dot keeps its sub-pixel centre under pooling, at a quarter of the cost per halving."""
    widths: tuple[int, ...] = (16, 32, 32)
    """Channels of the encoder's conv stages; each halves the resolution."""
    embed_dim: int = 64
    """D, the size of an embedding z."""
    action_kind: Literal["continuous", "discrete"] = "continuous"
    """Box or Discrete actions."""
    action_dim: int = 2
    """Continuous: the action vector's size; discrete: the number of actions."""
    action_low: tuple[float, ...] = (-1.0, -1.0)
    """Continuous: lower bound per action dimension (the trained action space, for planners and checks)."""
    action_high: tuple[float, ...] = (1.0, 1.0)
    """Continuous: upper bound per action dimension."""
    action_embed: int = 32
    """Width of the action's embedding fed to the predictor."""
    predictor_hidden: int = 256
    """Width of the predictor MLP."""
    predictor_depth: int = 2
    """Hidden layers of the predictor MLP."""
    rollout_steps: int = 8
    """K: open-loop prediction steps in the loss (clips are K + 1 frames)."""
    objective: Literal["jepa", "generative"] = "jepa"
    """``jepa``: predict embeddings; ``generative``: decode predictions to pixels (the control)."""
    regularizer: Literal["vicreg", "ema", "sigreg"] = "vicreg"
    """Collapse prevention of the jepa objective (ignored by ``generative``)."""
    prediction_weight: float = 1.0
    """Weight of the open-loop prediction error (mean over steps and dimensions) of the jepa objective."""
    variance_weight: float = 1.0
    """vicreg: weight of the per-dimension std hinge."""
    covariance_weight: float = 1.0
    """vicreg: weight of the off-diagonal covariance penalty."""
    sigreg_weight: float = 1.0
    """sigreg: weight of the Epps–Pulley Gaussianity statistic."""
    sigreg_directions: int = 64
    """sigreg: random projections per step."""
    smoothness_weight: float = 0.0
    """Weight of the temporal smoothness term (mean squared step between consecutive embeddings)."""
    ema_start: float = 0.99
    """ema: target decay at the first step; it rises linearly to ``ema_end`` at the last."""
    ema_end: float = 1.0
    """ema: target decay at the last step."""
    inverse_dynamics: bool = True
    """Add a head predicting a_t from (z_t, z_{t+1}) and its loss."""
    inverse_dynamics_weight: float = 1.0
    """Weight of the inverse-dynamics loss."""
    reward_head: bool = False
    """Add a head predicting r_t from ẑ_{t+1} (trained on the recorded rewards)."""
    reward_weight: float = 1.0
    """Weight of the reward loss."""


def _mlp(inp: int, hidden: int, out: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = inp
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    layers.append(nn.Linear(width, out))
    return nn.Sequential(*layers)


class FrameEncoder(nn.Module):
    """Conv stages (stride 2 each) then a linear map: float [N, C, H, W] -> [N, D]."""

    def __init__(self, cfg: JEPAWorldConfig) -> None:
        super().__init__()
        h, w, c = cfg.frame_shape
        self.pool = cfg.input_pool
        layers: list[nn.Module] = []
        for width in cfg.widths:
            layers += [nn.Conv2d(c, width, 3, stride=2, padding=1), nn.GELU()]
            c = width
        self.convs = nn.Sequential(*layers)
        for layer in self.convs:
            if isinstance(layer, nn.Conv2d):
                # He init: PyTorch's default shrinks a small moving dot to almost nothing by the last
                # stage (embeddings of different frames start ~1e-3 apart), a near-collapse VICReg
                # then takes hundreds of steps to undo
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        scale = cfg.input_pool * 2 ** len(cfg.widths)
        self.grid = (h // scale, w // scale)
        self.proj = nn.Linear(c * self.grid[0] * self.grid[1], cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool)  # (N, C, H / pool, W / pool)
        return self.proj(self.convs(x * 2.0 - 1.0).flatten(1))  # (N, D)


class FrameDecoder(nn.Module):
    """The encoder mirrored: float [N, D] -> frames [N, C, H / input_pool, W / input_pool] in [0, 1]."""

    def __init__(self, cfg: JEPAWorldConfig) -> None:
        super().__init__()
        h, w, c = cfg.frame_shape
        scale = cfg.input_pool * 2 ** len(cfg.widths)
        self.grid = (h // scale, w // scale)
        widths = list(reversed(cfg.widths))
        self.proj = nn.Linear(cfg.embed_dim, widths[0] * self.grid[0] * self.grid[1])
        layers: list[nn.Module] = []
        for i, width in enumerate(widths):
            out = widths[i + 1] if i + 1 < len(widths) else c
            layers.append(nn.ConvTranspose2d(width, out, 4, stride=2, padding=1))
            if i + 1 < len(widths):
                layers.append(nn.GELU())
        self.deconvs = nn.Sequential(*layers)
        self.first_width = widths[0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.proj(z).view(z.shape[0], self.first_width, *self.grid)  # (N, C0, h, w)
        return torch.sigmoid(self.deconvs(x))


class ActionPredictor(nn.Module):
    """ẑ_{t+1} = ẑ_t + MLP([LayerNorm(ẑ_t), embed(a_t)]): float [N, D], actions [N] or [N, A] -> [N, D]."""

    def __init__(self, cfg: JEPAWorldConfig) -> None:
        super().__init__()
        self.discrete = cfg.action_kind == "discrete"
        self.action = (nn.Embedding(cfg.action_dim, cfg.action_embed) if self.discrete
                       else nn.Linear(cfg.action_dim, cfg.action_embed))
        self.norm = nn.LayerNorm(cfg.embed_dim)
        self.net = _mlp(cfg.embed_dim + cfg.action_embed, cfg.predictor_hidden, cfg.embed_dim, cfg.predictor_depth)

    def forward(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        a = self.action(action.long() if self.discrete else action.float())  # (N, E)
        return z + self.net(torch.cat([self.norm(z), a], dim=-1))


class JEPAWorldModel(nn.Module):
    """Encoder, action-conditioned predictor and optional heads; ``loss`` trains, the rest plans.

    As a ``WorldModel``: ``encode(frames [B, T, C, H, W]) -> z [B, D]`` (the last frame's
    embedding), ``step(z, action) -> (z', Prediction(embedding=z', reward=...))``, and
    ``rollout(z [N, D], actions [N, L(, A)]) -> [N, L, D]`` for planners.
    """

    def __init__(self, config: JEPAWorldConfig) -> None:
        super().__init__()
        self.config = cfg = config
        h, w, _ = cfg.frame_shape
        scale = cfg.input_pool * 2 ** len(cfg.widths)
        if h % scale or w % scale:
            raise UserInputError(f"frame_shape {cfg.frame_shape}: H and W must be divisible by {scale}")
        if cfg.action_kind == "continuous" and not (len(cfg.action_low) == len(cfg.action_high) == cfg.action_dim):
            raise UserInputError(f"action_low/action_high must have action_dim={cfg.action_dim} entries")
        self.encoder = FrameEncoder(cfg)
        self.predictor = ActionPredictor(cfg)
        self.target_encoder = (make_target(self.encoder)
                               if cfg.objective == "jepa" and cfg.regularizer == "ema" else None)
        self.decoder = FrameDecoder(cfg) if cfg.objective == "generative" else None
        self.idm = (_mlp(2 * cfg.embed_dim, cfg.predictor_hidden, cfg.action_dim, 1)
                    if cfg.inverse_dynamics else None)
        self.reward = _mlp(cfg.embed_dim, cfg.predictor_hidden, 1, 1) if cfg.reward_head else None

    # ------------------------------------------------------------------ the WorldModel face

    @property
    def action_space(self) -> gym.Space:
        cfg = self.config
        if cfg.action_kind == "discrete":
            return gym.spaces.Discrete(cfg.action_dim)
        return gym.spaces.Box(np.asarray(cfg.action_low, np.float32), np.asarray(cfg.action_high, np.float32))

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """Embeddings of every frame: float [B, T, C, H, W] in [0, 1] -> [B, T, D]."""
        b, t = frames.shape[:2]
        return self.encoder(frames.flatten(0, 1)).view(b, t, -1)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """The state a planner starts from: the last frame's embedding, [B, T, C, H, W] -> [B, D]."""
        return self.encoder(frames[:, -1])

    def step(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, Prediction]:
        nxt = self.predictor(state, action)
        reward = self.reward(nxt).squeeze(-1) if self.reward is not None else None
        return nxt, Prediction(embedding=nxt, reward=reward)

    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Open-loop predictions: z float [N, D], actions [N, L] or [N, L, A] -> ẑ_1..ẑ_L [N, L, D]."""
        out = []
        for t in range(actions.shape[1]):
            z = self.predictor(z, actions[:, t])
            out.append(z)
        return torch.stack(out, dim=1)

    def predict_reward(self, z: torch.Tensor) -> torch.Tensor:
        """Reward of the action that led to embedding z: [..., D] -> [...]; needs ``reward_head``."""
        if self.reward is None:
            raise UserInputError("this model has no reward head (train it with reward_head=True)")
        return self.reward(z).squeeze(-1)

    # ------------------------------------------------------------------ training

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """``batch``: frames uint8 [B, K+1, H, W, C], actions [B, K+1(, A)] (the last unused), rewards [B, K+1]."""
        cfg = self.config
        frames = to_model_frames(batch["frames"])  # (B, T, C, H, W)
        k = frames.shape[1] - 1
        actions = batch["actions"][:, :k]
        z = self.embed(frames)  # (B, T, D)
        pred = self.rollout(z[:, 0], actions)  # (B, K, D)
        metrics: dict[str, Any] = {}
        if cfg.objective == "generative":
            assert self.decoder is not None
            decoded = self.decoder(torch.cat([z[:, :1], pred], dim=1).flatten(0, 1))  # (B*T, C, H', W')
            target = frames.flatten(0, 1)
            if cfg.input_pool > 1:
                target = F.avg_pool2d(target, cfg.input_pool)
            main = F.mse_loss(decoded, target)
            metrics["losses/pixels"] = main.detach()
            metrics["charts/psnr"] = (-10 * torch.log10(main.detach().clamp_min(1e-10)))
            total = main
        else:
            if self.target_encoder is not None:
                with torch.no_grad():
                    b, t = frames.shape[:2]
                    target = self.target_encoder(frames.flatten(0, 1)).view(b, t, -1)
            else:
                target = z
            main = F.mse_loss(pred, target[:, 1:])  # a mean over dimensions too, on the scale of VICReg's terms
            metrics["losses/prediction"] = main.detach()
            total = cfg.prediction_weight * main
            flat = z.flatten(0, 1).float()  # (B*T, D); statistics in float32 even under bf16 autocast
            if cfg.regularizer == "vicreg":
                var, cov = variance_loss(flat), covariance_loss(flat)
                total = total + cfg.variance_weight * var + cfg.covariance_weight * cov
                metrics["losses/variance"], metrics["losses/covariance"] = var.detach(), cov.detach()
            elif cfg.regularizer == "sigreg":
                sig = sigreg_loss(flat, cfg.sigreg_directions)
                total = total + cfg.sigreg_weight * sig
                metrics["losses/sigreg"] = sig.detach()
        if cfg.smoothness_weight > 0:
            smooth = temporal_smoothness(z)
            total = total + cfg.smoothness_weight * smooth
            metrics["losses/smoothness"] = smooth.detach()
        if self.idm is not None:
            guess = self.idm(torch.cat([z[:, :-1], z[:, 1:]], dim=-1))  # (B, K, A)
            if cfg.action_kind == "discrete":
                idm = F.cross_entropy(guess.flatten(0, 1), actions.flatten().long())
            else:
                idm = F.mse_loss(guess, actions.float())
            total = total + cfg.inverse_dynamics_weight * idm
            metrics["losses/inverse_dynamics"] = idm.detach()
        if self.reward is not None:
            rew = F.mse_loss(self.reward(pred).squeeze(-1), batch["rewards"][:, :k].float())
            total = total + cfg.reward_weight * rew
            metrics["losses/reward"] = rew.detach()
        metrics["charts/embedding_std"] = z.detach().flatten(0, 1).std(dim=0).mean()
        return total, metrics

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Move the EMA target encoder (regularizer ``ema`` only)."""
        if self.target_encoder is not None:
            ema_update(self.target_encoder, self.encoder,
                       ema_decay(step, total_steps, self.config.ema_start, self.config.ema_end))
