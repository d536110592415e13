"""Named configs of the Genie stages: ``tiny`` (2 CPU cores, minutes), ``small``, ``base`` (one GPU).

Tokenizer, measured on 64x64 CoinRun frames (train levels 0-9,999, held-out levels >=
100,000; AdamW lr 2e-3, batches of 8 clips x 16 frames with 4 frames per clip
reconstructed): ``tiny`` reaches 26.8 dB held-out PSNR (SSIM 0.68, 99.8% of its codes
used) after 10 minutes on 2 shared CPU cores; a 3.6x larger one (width 96, 2 residual
blocks, 1024 codes) reached the same PSNR in the same time, so tiny stays small. Codes
of 8 dimensions did no worse than 16 in shorter runs. ``base`` follows Genie's CoinRun tokenizer: 4x4 pixels per
token (16x16 tokens), 1024 codes of 32 dimensions.
"""

from nextworld.models.genie.tokenizer import TokenizerConfig

TOKENIZER_PRESETS: dict[str, TokenizerConfig] = {
    "tiny": TokenizerConfig(width=64, num_res_blocks=1, codebook_size=512, code_dim=8),
    "small": TokenizerConfig(width=128, num_res_blocks=2, codebook_size=1024, code_dim=8),
    "base": TokenizerConfig(downsample=4, width=256, num_res_blocks=4, codebook_size=1024, code_dim=32),
}
