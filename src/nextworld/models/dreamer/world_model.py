"""DreamerV3's world model: pixels, actions and rewards in; an RSSM that imagines.

Data layout (``DreamerBatch`` keys; the Dreamer convention, one row per *arrival* at a frame):

- ``frames`` uint8 [B, T, H, W, C]: frame t;
- ``prev_actions`` [B, T] int64 (Discrete) or [B, T, A] float (Box, the env's units): the action
  that led to frame t (zeros where ``is_first``);
- ``rewards`` float [B, T]: the reward received on arriving at frame t (0 where ``is_first``);
- ``is_first`` bool [B, T]: frame t starts an episode (the state resets there);
- ``is_terminal`` bool [B, T]: frame t ended its episode by termination (not by a time limit).

``nextworld.data.replay`` turns the shared dataset's rows (row t: frame t, the action after
it and that action's reward and end flags) into it.

Losses (mean over batch and time): pixels, MSE summed over the frame; reward, two-hot
cross-entropy over symlog-spaced bins (``nn/twohot.py``); continuation, binary cross-entropy;
KL balancing, ``kl_dyn * max(free, KL[sg(q) || p]) + kl_rep * max(free, KL[q || sg(p)])``
(dynamics 0.5, representation 0.1, 1 free nat).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nextworld.data.episode_format import space_from_json
from nextworld.data.frames import to_model_frames
from nextworld.models.base import Prediction
from nextworld.models.dreamer.networks import RSSM, PixelDecoder, PixelEncoder, categorical_kl, mlp
from nextworld.nn.twohot import TwoHot


@dataclass
class DreamerConfig:
    """A Dreamer agent: world model (RSSM, pixel encoder/decoder, reward and continuation heads) and
    actor-critic. Sizes of the ``tiny`` preset by default."""

    action_space: dict[str, Any] = field(default_factory=lambda: {"type": "discrete", "n": 7})
    """The env's action space as JSON (``data.episode_format.space_to_json``): Discrete or Box."""
    frame_size: int = 64
    """Side of the square frames."""
    channels: int = 3
    """Colour channels."""
    depth: int = 8
    """Channels of the first encoder convolution; each further stage doubles them."""
    deter: int = 128
    """Size of the GRU's deterministic state h."""
    hidden: int = 128
    """Width of the RSSM's MLPs."""
    stoch: int = 32
    """Categorical variables in the stochastic state z."""
    classes: int = 32
    """Classes per categorical variable."""
    unimix: float = 0.01
    """Share of a uniform distribution mixed into every categorical (latents and discrete actions)."""
    units: int = 128
    """Width of the reward, continuation, actor and critic MLPs."""
    layers: int = 2
    """Hidden layers of those MLPs."""
    num_bins: int = 255
    """Two-hot bins of the reward and value heads."""
    kl_dyn: float = 0.5
    """Weight of the dynamics KL term (trains the prior towards the posterior)."""
    kl_rep: float = 0.1
    """Weight of the representation KL term (trains the posterior towards the prior)."""
    free_nats: float = 1.0
    """Each KL term is clipped below at this many nats (summed over the latent variables)."""
    horizon: int = 15
    """Imagined steps per rollout for the actor-critic."""
    gamma: float = 0.997
    """Discount per step."""
    lam: float = 0.95
    """λ of the λ-returns."""
    entropy: float = 3e-4
    """Actor entropy bonus (on normalised returns)."""
    slow_critic_decay: float = 0.98
    """EMA decay of the slow critic that regularises the critic."""
    slow_critic_reg: float = 1.0
    """Weight of the critic's regression towards the slow critic's values."""
    return_norm_decay: float = 0.99
    """EMA decay of the return scale (the 95th minus the 5th percentile of λ-returns)."""
    actor_std: tuple[float, float] = (0.1, 1.0)
    """Box actions: the actor's standard deviation lies in this range."""

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.frame_size, self.frame_size, self.channels)

    def check(self) -> None:
        if self.frame_size < 8 or self.frame_size & (self.frame_size - 1):
            raise ValueError(f"frame_size {self.frame_size}: must be a power of two >= 8")
        space_from_json(self.action_space)


def action_dim(space: gym.Space) -> int:
    return int(space.n) if isinstance(space, gym.spaces.Discrete) else int(np.prod(space.shape))


class DreamerWorldModel(nn.Module):
    """Encoder, RSSM, decoder, reward and continuation heads; the WorldModel face for play and planning."""

    def __init__(self, config: DreamerConfig) -> None:
        super().__init__()
        config.check()
        self.config = config
        self.action_space = space_from_json(config.action_space)
        self.discrete = isinstance(self.action_space, gym.spaces.Discrete)
        self.action_dim = action_dim(self.action_space)
        self.frame_shape = config.frame_shape
        self.encoder = PixelEncoder(config.channels, config.frame_size, config.depth)
        self.rssm = RSSM(self.action_dim, self.encoder.out_dim, config.deter, config.hidden, config.stoch,
                         config.classes, config.unimix)
        feat = self.rssm.feat_dim
        self.decoder = PixelDecoder(feat, config.channels, config.frame_size, config.depth)
        self.twohot = TwoHot(config.num_bins)
        self.reward_head = mlp(feat, config.units, config.layers, config.num_bins, zero_out=True)
        self.cont_head = mlp(feat, config.units, config.layers, 1)
        if not self.discrete:
            self.register_buffer("action_low", torch.as_tensor(self.action_space.low, dtype=torch.float32).flatten(),
                                 persistent=False)
            self.register_buffer("action_high", torch.as_tensor(self.action_space.high, dtype=torch.float32).flatten(),
                                 persistent=False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def feat_dim(self) -> int:
        return self.rssm.feat_dim

    # ------------------------------------------------------------------ actions

    def action_vector(self, actions: torch.Tensor) -> torch.Tensor:
        """Env actions ([...] int for Discrete, [..., A] in the env's units for Box) -> model input
        [..., action_dim]: one-hot, or scaled to [-1, 1]."""
        if self.discrete:
            return F.one_hot(actions.long(), self.action_dim).float()
        a = actions.float().flatten(-len(self.action_space.shape)) if self.action_space.shape else actions.float()
        return 2 * (a - self.action_low) / (self.action_high - self.action_low).clamp_min(1e-8) - 1

    def env_action(self, vector: torch.Tensor) -> torch.Tensor:
        """Inverse of ``action_vector`` for one-hot or [-1, 1] vectors -> env actions."""
        if self.discrete:
            return vector.argmax(-1)
        a = self.action_low + (vector.clamp(-1, 1) + 1) / 2 * (self.action_high - self.action_low)
        return a.view(*vector.shape[:-1], *self.action_space.shape)

    # ------------------------------------------------------------------ training

    def features(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([h, z], -1)

    def reward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.twohot.decode(self.reward_head(feat))

    def continuation(self, feat: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.cont_head(feat).squeeze(-1))

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any], dict[str, torch.Tensor]]:
        """World-model loss on a batch in the Dreamer layout (module docstring).

        Returns (loss, metrics, posterior {"h", "z"} [B, T, ...] to start imagination from).
        """
        cfg = self.config
        x = to_model_frames(batch["frames"])  # [B, T, C, H, W]
        b, t = x.shape[:2]
        embeds = self.encoder(x.flatten(0, 1)).view(b, t, -1)
        actions = self.action_vector(batch["prev_actions"])
        h, z, post, prior = self.rssm.observe(embeds, actions, batch["is_first"])
        feat = self.features(h, z)
        recon = self.decoder(feat.flatten(0, 1)).view_as(x)
        image_loss = (recon - x).pow(2).sum((-1, -2, -3)).mean()
        reward_loss = self.twohot.loss(self.reward_head(feat), batch["rewards"]).mean()
        cont_target = (~batch["is_terminal"]).float()
        cont_loss = F.binary_cross_entropy_with_logits(self.cont_head(feat).squeeze(-1), cont_target)
        dyn, rep = kl_balance_terms(post, prior, cfg.free_nats)
        loss = image_loss + reward_loss + cont_loss + cfg.kl_dyn * dyn + cfg.kl_rep * rep
        with torch.no_grad():
            kl = categorical_kl(post, prior).mean()
        metrics = {"losses/image": image_loss.detach(), "losses/reward": reward_loss.detach(),
                   "losses/continuation": cont_loss.detach(), "losses/kl_dyn": dyn.detach(),
                   "losses/kl_rep": rep.detach(), "charts/kl": kl}
        return loss, metrics, {"h": h, "z": z}

    # ------------------------------------------------------------------ the WorldModel face
    # A state is the feature vector [B, deter + stoch * classes]: h and z side by side.

    def split(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return state[..., :self.config.deter], state[..., self.config.deter:]

    def encode(self, frames: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        """Frames float [B, T, C, H, W] (and the env actions between them, [B, T-1], when known; zeros
        otherwise) -> the posterior state after the last frame, [B, F]."""
        b, t = frames.shape[:2]
        embeds = self.encoder(frames.flatten(0, 1)).view(b, t, -1)
        vectors = torch.zeros(b, t, self.action_dim, device=frames.device)
        if actions is not None and t > 1:
            vectors[:, 1:] = self.action_vector(actions)
        is_first = torch.zeros(b, t, dtype=torch.bool, device=frames.device)
        is_first[:, 0] = True
        h, z, _, _ = self.rssm.observe(embeds, vectors, is_first)
        return self.features(h[:, -1], z[:, -1])

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        """The frame a state stands for, float [B, C, H, W] in [0, 1]."""
        return self.decoder(state).clamp(0, 1)

    def step(self, state: torch.Tensor, action: torch.Tensor, generator: torch.Generator | None = None,
             *, frames: bool = True) -> tuple[torch.Tensor, Prediction]:
        """Imagine one step under env actions [B] / [B, *shape]: a sample of the prior (``generator``
        draws it), its frame (unless ``frames=False``), reward, continuation and the state itself as
        the embedding."""
        h, z = self.split(state)
        h, z, _ = self.rssm.img_step(h, z, self.action_vector(action), generator=generator)
        feat = self.features(h, z)
        return feat, Prediction(frames=self.decode(feat) if frames else None, embedding=feat,
                                reward=self.reward(feat), continuation=self.continuation(feat))


def kl_balance_terms(post: torch.Tensor, prior: torch.Tensor, free_nats: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DreamerV3's two KL terms (means over batch and time), each clipped below at ``free_nats``:
    dynamics ``KL[sg(q) || p]`` (gradient to the prior only) and representation
    ``KL[q || sg(p)]`` (gradient to the posterior only)."""
    dyn = categorical_kl(post.detach(), prior).clamp_min(free_nats).mean()
    rep = categorical_kl(post, prior.detach()).clamp_min(free_nats).mean()
    return dyn, rep

