"""Dreamer's behaviour: an actor and a critic trained on imagined rollouts (DreamerV3).

From every posterior state of a training batch the world model imagines ``horizon`` steps
under the actor. The critic learns the λ-returns of those rollouts (two-hot regression,
regularised towards a slow EMA copy of itself); the actor maximises the same returns,
normalised by ``max(1, S)`` with ``S`` an EMA of the 95th minus the 5th percentile of the
returns (so sparse small rewards are not drowned, and large ones not blown up), plus a small
entropy bonus. Discrete actions learn by REINFORCE (the imagined states are constants to
it); continuous ones by backpropagating the returns through the learned dynamics.

λ-returns over an imagined trajectory with rewards ``r_1..r_H``, continuation probabilities
``c_1..c_H`` (of the state each step arrives at) and values ``v_0..v_H``::

    R_H = v_H,    R_t = r_{t+1} + γ c_{t+1} ((1 - λ) v_{t+1} + λ R_{t+1})
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nextworld.models.dreamer.networks import gumbel_noise, mlp
from nextworld.models.dreamer.world_model import DreamerConfig, DreamerWorldModel


def lambda_returns(rewards: torch.Tensor, conts: torch.Tensor, values: torch.Tensor, gamma: float,
                   lam: float) -> torch.Tensor:
    """λ-returns (module docstring). ``rewards`` and ``conts`` [H, N] are those of arriving at steps
    1..H, ``values`` [H + 1, N] of steps 0..H; returns [H, N] for steps 0..H-1."""
    horizon = rewards.shape[0]
    out = []
    last = values[-1]
    for t in reversed(range(horizon)):
        last = rewards[t] + gamma * conts[t] * ((1 - lam) * values[t + 1] + lam * last)
        out.append(last)
    return torch.stack(out[::-1])


class ReturnNorm(nn.Module):
    """EMA of the 5th-95th percentile range of returns; ``scale = max(1, range)``."""

    def __init__(self, decay: float) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("range", torch.zeros(()))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> None:
        flat = returns.detach().float().flatten()
        spread = torch.quantile(flat, 0.95) - torch.quantile(flat, 0.05)
        if int(self.count) == 0:
            self.range.copy_(spread)
        else:
            self.range.mul_(self.decay).add_((1 - self.decay) * spread)
        self.count.add_(1)

    @property
    def scale(self) -> torch.Tensor:
        return self.range.clamp_min(1.0)


class Actor(nn.Module):
    """Features -> a distribution over actions (as the world model's action vectors)."""

    def __init__(self, feat_dim: int, config: DreamerConfig, action_dim: int, discrete: bool) -> None:
        super().__init__()
        self.discrete, self.action_dim, self.unimix = discrete, action_dim, config.unimix
        self.min_std, self.max_std = config.actor_std
        self.net = mlp(feat_dim, config.units, config.layers, action_dim if discrete else 2 * action_dim)

    def dist(self, feat: torch.Tensor) -> torch.distributions.Distribution:
        out = self.net(feat)
        if self.discrete:
            probs = (1 - self.unimix) * out.float().softmax(-1) + self.unimix / self.action_dim
            return torch.distributions.OneHotCategoricalStraightThrough(probs=probs)
        mean, std = out.float().chunk(2, -1)
        std = self.min_std + (self.max_std - self.min_std) * torch.sigmoid(std + 2.0)
        return torch.distributions.Independent(torch.distributions.Normal(torch.tanh(mean), std), 1)

    def act(self, feat: torch.Tensor, mode: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """An action vector [B, action_dim] (one-hot, or clipped to [-1, 1]): sampled, or the mode."""
        dist = self.dist(feat)
        if self.discrete:
            logits = dist.logits
            index = (logits if mode else logits + gumbel_noise(logits.shape, logits.device, generator)).argmax(-1)
            return F.one_hot(index, self.action_dim).float()
        if mode:
            return dist.mean.clamp(-1, 1)
        noise = torch.randn(dist.mean.shape, generator=generator, device=feat.device)
        return (dist.mean + dist.stddev * noise).clamp(-1, 1)


class DreamerAgent(nn.Module):
    """World model + actor + critic (+ slow critic and return scale): family ``dreamer``."""

    def __init__(self, config: DreamerConfig) -> None:
        super().__init__()
        self.config = config
        self.world_model = DreamerWorldModel(config)
        wm = self.world_model
        self.actor = Actor(wm.feat_dim, config, wm.action_dim, wm.discrete)
        self.critic = mlp(wm.feat_dim, config.units, config.layers, config.num_bins, zero_out=True)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.return_norm = ReturnNorm(config.return_norm_decay)

    @property
    def action_space(self):
        return self.world_model.action_space

    # the WorldModel face, for planners: the world model's, without decoding frames
    @property
    def reward(self) -> nn.Module:
        """The reward head (planners check a model has one)."""
        return self.world_model.reward_head

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.world_model.encode(frames)

    def step(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return self.world_model.step(state, action, frames=False)

    def value(self, feat: torch.Tensor, slow: bool = False) -> torch.Tensor:
        return self.world_model.twohot.decode((self.slow_critic if slow else self.critic)(feat))

    @torch.no_grad()
    def update_slow_critic(self) -> None:
        decay = self.config.slow_critic_decay
        for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters()):
            slow.mul_(decay).add_((1 - decay) * fast)

    # ------------------------------------------------------------------ imagination

    def imagine(self, h: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """From start states [N, ...], ``horizon`` steps under the actor -> features [H + 1, N, F]
        and the action vectors taken [H, N, A]. Discrete actions: computed without gradients."""
        wm = self.world_model
        grad = torch.enable_grad() if not wm.discrete else torch.no_grad()
        feats, actions = [wm.features(h, z)], []
        with grad:
            for _ in range(self.config.horizon):
                feat = feats[-1]
                if wm.discrete:
                    action = self.actor.act(feat)
                else:
                    dist = self.actor.dist(feat.detach())
                    action = dist.rsample().clamp(-1, 1)
                h, z, _ = wm.rssm.img_step(h, z, action)
                feats.append(wm.features(h, z))
                actions.append(action)
        return torch.stack(feats), torch.stack(actions)

    def behavior_losses(self, start: dict[str, torch.Tensor], is_terminal: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Actor and critic losses from imagined rollouts that start at every posterior state of a
        batch (``start``: h, z [B, T, ...]; ``is_terminal`` [B, T])."""
        cfg, wm = self.config, self.world_model
        h = start["h"].detach().flatten(0, 1)
        z = start["z"].detach().flatten(0, 1)
        feats, actions = self.imagine(h, z)
        rewards = wm.reward(feats[1:])  # [H, N]
        conts = wm.continuation(feats[1:])
        values = self.value(feats)  # [H + 1, N]
        returns = lambda_returns(rewards, conts, values, cfg.gamma, cfg.lam)  # [H, N]
        # step t counts as much as the trajectory is likely still alive there: c_0 c_1 ... c_t, with c_0
        # from the data (a terminal start state imagines nothing that counts)
        start_cont = (~is_terminal.flatten()).float()
        alive = torch.cat([start_cont[None], conts[:-1]], 0)
        weight = torch.cumprod(alive, 0).detach()
        self.return_norm.update(returns)
        scale = self.return_norm.scale
        advantage = (returns - values[:-1]) / scale
        dist = self.actor.dist(feats[:-1].detach())
        entropy = dist.entropy()
        if wm.discrete:
            objective = dist.log_prob(actions.detach()) * advantage.detach()
        else:
            objective = advantage
        actor_loss = -(weight * (objective + cfg.entropy * entropy)).mean()
        logits = self.critic(feats[:-1].detach())
        twohot = wm.twohot
        critic_loss = twohot.loss(logits, returns.detach())
        critic_loss = critic_loss + cfg.slow_critic_reg * twohot.loss(logits, self.value(feats[:-1].detach(), slow=True))
        critic_loss = (weight * critic_loss).mean()
        metrics = {"losses/actor": actor_loss.detach(), "losses/critic": critic_loss.detach(),
                   "charts/imagined_return": returns.mean().detach(), "charts/return_scale": scale.detach(),
                   "charts/actor_entropy": entropy.mean().detach(), "charts/imagined_reward": rewards.mean().detach()}
        return actor_loss, critic_loss, metrics

    # ------------------------------------------------------------------ acting

    @torch.no_grad()
    def policy_step(self, state: dict[str, torch.Tensor] | None, frame: torch.Tensor, is_first: bool,
                    mode: bool = False, generator: torch.Generator | None = None
                    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Act in a real env at batch 1: the filter state (None at the start), the new frame uint8
        [H, W, C] -> (new state, the env action to take)."""
        wm = self.world_model
        device = wm.device
        if state is None:
            h, z = wm.rssm.initial(1, device)
            state = {"h": h, "z": z, "action": torch.zeros(1, wm.action_dim, device=device)}
        x = frame.to(device).movedim(-1, 0).float()[None] / 255
        embed = wm.encoder(x)
        first = torch.tensor([is_first], device=device)
        h, z, _, _ = wm.rssm.obs_step(state["h"], state["z"], state["action"], embed, first, generator=generator)
        action = self.actor.act(wm.features(h, z), mode=mode, generator=generator)
        return {"h": h, "z": z, "action": action}, wm.env_action(action)[0]
