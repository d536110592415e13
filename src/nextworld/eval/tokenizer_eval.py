"""How well a video tokenizer reconstructs held-out clips through its tokens."""

from __future__ import annotations

import numpy as np
import torch

from nextworld.data.frames import to_model_frames
from nextworld.data.windows import ClipDataset
from nextworld.eval.metrics import codebook_usage, psnr, ssim
from nextworld.models.genie.tokenizer import VideoTokenizer


@torch.no_grad()
def evaluate_tokenizer(model: VideoTokenizer, clips: ClipDataset, max_clips: int = 64, batch_size: int = 8,
                       device: str | torch.device = "cpu") -> dict[str, float]:
    """Encode and decode up to ``max_clips`` clips and compare the result with the frames.

    The clips are evenly spaced over the dataset (always the same ones for the same data),
    so two checkpoints evaluated on one split see identical frames. The model is put in
    eval mode for the call and its previous mode restored.

    Args:
        model: the tokenizer, already on ``device``.
        clips: held-out clips; frames uint8 [T, H, W, C].
        max_clips: clips to evaluate at most.
        batch_size: clips per forward pass.
        device: where the frames are sent.
    Returns:
        ``tokenizer_psnr`` and ``tokenizer_ssim`` (means over frames of the per-frame
        values), ``codebook_usage`` (fraction of the codebook used over all evaluated
        frames) and ``num_frames``.
    """
    n = min(max_clips, len(clips))
    chosen = np.linspace(0, len(clips) - 1, n).round().astype(int)
    was_training = model.training
    model.eval()
    psnr_sum, ssim_sum, num_frames = 0.0, 0.0, 0
    all_tokens = []
    for start in range(0, n, batch_size):
        frames = torch.stack([clips[int(i)]["frames"] for i in chosen[start:start + batch_size]]).to(device)
        x = to_model_frames(frames)  # (B, T, C, H, W)
        tokens = model.encode(x)  # (B, T, h, w)
        recon = model.decode(tokens)
        psnr_sum += float(psnr(recon, x).sum())
        ssim_sum += float(ssim(recon, x).sum())
        num_frames += x.shape[0] * x.shape[1]
        all_tokens.append(tokens.flatten())
    model.train(was_training)
    return {
        "tokenizer_psnr": psnr_sum / num_frames,
        "tokenizer_ssim": ssim_sum / num_frames,
        "codebook_usage": float(codebook_usage(torch.cat(all_tokens), model.num_codes)),
        "num_frames": num_frames,
    }
