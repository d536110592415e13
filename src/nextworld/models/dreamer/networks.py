"""Dreamer's building blocks: the pixel encoder and decoder, MLPs, and the RSSM.

RSSM (recurrent state-space model, Hafner et al. 2019; DreamerV3's form): the state is
``(h, z)``: ``h`` a deterministic GRU state [B, deter], ``z`` a stochastic state of
``stoch`` categorical variables with ``classes`` classes each, held one-hot and flattened
[B, stoch * classes]. One step under action ``a``::

    h' = GRU(h, MLP([z, a]))                       (deterministic)
    prior     p(z' | h')        = Cat(MLP(h'))      (imagination: what the model expects)
    posterior q(z' | h', e')    = Cat(MLP([h', e'])) (with the next frame's embedding e')

Both categoricals mix 1% of a uniform distribution into their probabilities (``unimix``), so
no class has zero probability and the KL terms stay finite; samples are straight-through
(one-hot forward, the probabilities' gradient backward).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def mlp(in_dim: int, units: int, layers: int, out_dim: int | None = None, zero_out: bool = False) -> nn.Sequential:
    """``layers`` x (Linear, LayerNorm, SiLU), then an optional Linear to ``out_dim`` (zero-initialised
    when ``zero_out``: a two-hot head that starts by predicting 0)."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(in_dim if i == 0 else units, units, bias=False), nn.LayerNorm(units), nn.SiLU()]
    if out_dim is not None:
        head = nn.Linear(units if layers else in_dim, out_dim)
        if zero_out:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        mods.append(head)
    return nn.Sequential(*mods)


def _stages(frame_size: int) -> int:
    stages = int(math.log2(frame_size // 4))
    if frame_size < 8 or 4 * 2 ** stages != frame_size:
        raise ValueError(f"frame_size {frame_size}: must be 4 * 2^k with k >= 1 (64 is the default)")
    return stages


def gumbel_noise(shape: torch.Size, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise: ``argmax(logits + noise)`` samples the categorical of ``logits`` (and,
    unlike ``torch.multinomial``, costs one elementwise pass however many rows there are)."""
    u = torch.rand(shape, device=device, generator=generator).clamp(1e-20, 1 - 1e-7)
    return -torch.log(-torch.log(u))


class PixelEncoder(nn.Module):
    """Frames float [N, C, S, S] in [0, 1] -> embeddings [N, out_dim]: stride-2 4x4 convolutions from
    ``depth`` channels, doubling, down to 4x4."""

    def __init__(self, channels: int, frame_size: int, depth: int) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        width_in = channels
        for i in range(_stages(frame_size)):
            width = depth * 2 ** i
            mods += [nn.Conv2d(width_in, width, 4, 2, 1, bias=False), nn.GroupNorm(1, width), nn.SiLU()]
            width_in = width
        self.net = nn.Sequential(*mods, nn.Flatten())
        self.out_dim = width_in * 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x - 0.5)


class PixelDecoder(nn.Module):
    """Features [N, in_dim] -> frames [N, C, S, S] (the mean of a unit Gaussian, around [0, 1])."""

    def __init__(self, in_dim: int, channels: int, frame_size: int, depth: int) -> None:
        super().__init__()
        stages = _stages(frame_size)
        self.top = depth * 2 ** (stages - 1)
        self.inp = nn.Linear(in_dim, self.top * 16)
        mods: list[nn.Module] = []
        width_in = self.top
        for i in reversed(range(stages)):
            last = i == 0
            width = channels if last else depth * 2 ** (i - 1)
            mods.append(nn.ConvTranspose2d(width_in, width, 4, 2, 1, bias=last))
            if not last:
                mods += [nn.GroupNorm(1, width), nn.SiLU()]
            width_in = width
        self.net = nn.Sequential(*mods)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        x = self.inp(feat).view(-1, self.top, 4, 4)
        return self.net(x) + 0.5


class LayerNormGRUCell(nn.Module):
    """DreamerV3's GRU: one linear over [x, h] with LayerNorm, the update gate biased towards keeping h."""

    def __init__(self, in_dim: int, size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim + size, 3 * size, bias=False)
        self.norm = nn.LayerNorm(3 * size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        reset, cand, update = self.norm(self.linear(torch.cat([x, h], -1))).chunk(3, -1)
        reset = torch.sigmoid(reset)
        cand = torch.tanh(reset * cand)
        update = torch.sigmoid(update - 1)
        return update * cand + (1 - update) * h


class RSSM(nn.Module):
    """The recurrent state-space model; see the module docstring. States are ``(h, z)`` tuples."""

    def __init__(self, action_dim: int, embed_dim: int, deter: int, hidden: int, stoch: int, classes: int,
                 unimix: float) -> None:
        super().__init__()
        self.deter, self.stoch, self.classes, self.unimix = deter, stoch, classes, unimix
        self.action_dim = action_dim
        self.img_in = mlp(stoch * classes + action_dim, hidden, 1)
        self.gru = LayerNormGRUCell(hidden, deter)
        self.prior_net = mlp(deter, hidden, 1, stoch * classes)
        self.post_net = mlp(deter + embed_dim, hidden, 1, stoch * classes)

    @property
    def feat_dim(self) -> int:
        return self.deter + self.stoch * self.classes

    def initial(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.zeros(batch, self.deter, device=device),
                torch.zeros(batch, self.stoch * self.classes, device=device))

    def logits(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw outputs [..., stoch * classes] -> log-probabilities [..., stoch, classes] with the uniform mix."""
        probs = raw.view(*raw.shape[:-1], self.stoch, self.classes).float().softmax(-1)
        return torch.log((1 - self.unimix) * probs + self.unimix / self.classes)

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One-hot samples of log-probabilities [..., stoch, classes], straight-through, flattened."""
        probs = logits.exp()
        index = (logits.detach() + gumbel_noise(logits.shape, logits.device, generator)).argmax(-1)
        onehot = F.one_hot(index, self.classes).to(probs.dtype)
        return (onehot + probs - probs.detach()).flatten(-2)

    def mode(self, logits: torch.Tensor) -> torch.Tensor:
        """The most likely class of each variable, one-hot and flattened."""
        return F.one_hot(logits.argmax(-1), self.classes).to(logits.dtype).flatten(-2)

    def img_step(self, h: torch.Tensor, z: torch.Tensor, action: torch.Tensor, *, sample: bool = True,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(h, z) and an action vector [B, action_dim] -> (h', z' from the prior, prior logits)."""
        h = self.gru(self.img_in(torch.cat([z, action], -1)), h)
        prior = self.logits(self.prior_net(h))
        z = self.sample(prior, generator) if sample else self.mode(prior)
        return h, z, prior

    def obs_step(self, h: torch.Tensor, z: torch.Tensor, action: torch.Tensor, embed: torch.Tensor,
                 is_first: torch.Tensor, *, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One filtering step: the previous state and the action that led here (both zeroed where
        ``is_first`` [B] says a new episode starts), the new frame's embedding ->
        (h', z' from the posterior, posterior logits, prior logits)."""
        keep = (~is_first).to(h.dtype).unsqueeze(-1)
        h, z, action = h * keep, z * keep, action * keep
        h, _, prior = self.img_step(h, z, action, sample=False)
        post = self.logits(self.post_net(torch.cat([h, embed], -1)))
        return h, self.sample(post, generator), post, prior

    def observe(self, embeds: torch.Tensor, actions: torch.Tensor, is_first: torch.Tensor,
                state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Filter a sequence: embeddings [B, T, E], the actions that led to each frame [B, T, A]
        and ``is_first`` [B, T] -> h [B, T, deter], z [B, T, stoch*classes], posterior and prior
        logits [B, T, stoch, classes]."""
        b, t = embeds.shape[:2]
        h, z = self.initial(b, embeds.device) if state is None else state
        hs, zs, posts, priors = [], [], [], []
        for i in range(t):
            h, z, post, prior = self.obs_step(h, z, actions[:, i], embeds[:, i], is_first[:, i])
            hs.append(h)
            zs.append(z)
            posts.append(post)
            priors.append(prior)
        return torch.stack(hs, 1), torch.stack(zs, 1), torch.stack(posts, 1), torch.stack(priors, 1)


def categorical_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of categoricals given as log-probabilities [..., stoch, classes], summed over the
    variables -> [...]."""
    return (p_logits.exp() * (p_logits - q_logits)).sum((-1, -2))
