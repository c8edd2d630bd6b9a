"""A small DDPM-style U-Net ε-prediction network for images of any (also odd) spatial size."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cartoonist.models.embedding import LambdaEmbedding, batch_lam

__all__ = ["UNet"]


class ResBlock(nn.Module):
    """GroupNorm–SiLU–Conv, + projected λ embedding, GroupNorm–SiLU–Dropout–Conv, residual.

    Args:
        c_in: input channels.
        c_out: output channels (a 1×1 conv maps the skip path when they differ).
        emb_dim: width of the λ embedding.
        groups: GroupNorm groups (must divide c_in and c_out).
        dropout: dropout probability before the second conv.

    Shapes:
        h: [B, c_in, H, W]; emb: [B, emb_dim]. Output: [B, c_out, H, W].
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        z = self.conv1(self.act(self.norm1(h)))
        z = z + self.emb(emb)[:, :, None, None]
        z = self.conv2(self.drop(self.act(self.norm2(z))))
        return self.skip(h) + z


class Downsample(nn.Module):
    """3×3 conv with stride 2: [B, C, H, W] → [B, C, H/2, W/2] (H, W even)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, h: Tensor) -> Tensor:
        return self.conv(h)


class Upsample(nn.Module):
    """Nearest-neighbour ×2 then 3×3 conv: [B, C, H, W] → [B, C, 2H, 2W]."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, h: Tensor) -> Tensor:
        return self.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """DDPM-style U-Net predicting the noise ε̂(x, λ), without attention.

    Layout (L = len(channels) levels): conv_in → for each level ``blocks_per_level`` ResBlocks
    (each output kept as a skip) and, except at the last level, a stride-2 downsampling conv (also
    kept) → two middle ResBlocks → for each level in reverse ``blocks_per_level + 1`` ResBlocks
    on [h, skip] concatenations and, except at the first level, a nearest+conv upsampling →
    GroupNorm–SiLU–conv_out (zero-initialised, so ε̂ ≡ 0 at initialisation).

    Inputs whose height/width are not multiples of 2^(L−1) (e.g. 25×25) are zero-padded
    (split as evenly as possible between the two sides) and the output is cropped back. The
    padding is a fixed function of the shape only, so the model stays a smooth function of x and
    works under ``torch.func.jvp``/``vjp``. GroupNorm normalises per sample, so samples never
    interact.

    Args:
        event_shape: (C, H, W) of one sample.
        channels: channel width per resolution level, e.g. (32, 64, 64); every entry must be
            divisible by ``groups``.
        blocks_per_level: ResBlocks per level on the down path (>= 1).
        emb_dim: width of the λ embedding (>= 2).
        groups: GroupNorm groups.
        dropout: dropout probability inside the ResBlocks, in [0, 1).

    Shapes:
        x: [B, C, H, W]; lam: [B] (or a scalar, broadcast). Output: [B, C, H, W], in x's dtype
        (computation runs in the parameters' dtype).
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        channels: Sequence[int] = (32, 64, 64),
        blocks_per_level: int = 1,
        emb_dim: int = 128,
        groups: int = 8,
        dropout: float = 0.0,
    ):
        super().__init__()
        try:
            shape = tuple(int(s) for s in event_shape)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"event_shape must be a sequence (C, H, W), got {event_shape!r}"
            ) from e
        if len(shape) != 3 or any(s < 1 for s in shape):
            raise ValueError(
                f"event_shape must be (C, H, W) with positive sizes, got {event_shape!r}"
            )
        try:
            chans = tuple(int(c) for c in channels)
        except (TypeError, ValueError) as e:
            raise ValueError(f"channels must be a sequence of ints, got {channels!r}") from e
        if len(chans) == 0:
            raise ValueError("channels must be non-empty")
        if not isinstance(groups, int) or groups < 1:
            raise ValueError(f"groups must be a positive int, got {groups!r}")
        if any(c < 1 or c % groups for c in chans):
            raise ValueError(
                f"channels must be positive multiples of groups={groups}, got {channels!r}"
            )
        if not isinstance(blocks_per_level, int) or blocks_per_level < 1:
            raise ValueError(f"blocks_per_level must be a positive int, got {blocks_per_level!r}")
        if not isinstance(emb_dim, int) or emb_dim < 2:
            raise ValueError(f"emb_dim must be an int >= 2, got {emb_dim!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")

        self.event_shape = shape
        self.channels = chans
        self.multiple = 2 ** (len(chans) - 1)
        c_img = shape[0]
        self.embed = LambdaEmbedding(emb_dim)
        self.conv_in = nn.Conv2d(c_img, chans[0], 3, padding=1)

        def block(ci: int, co: int) -> ResBlock:
            return ResBlock(ci, co, emb_dim, groups, dropout)

        self.down = nn.ModuleList()
        skip_ch = [chans[0]]
        c = chans[0]
        for i, co in enumerate(chans):
            for _ in range(blocks_per_level):
                self.down.append(block(c, co))
                c = co
                skip_ch.append(c)
            if i < len(chans) - 1:
                self.down.append(Downsample(c))
                skip_ch.append(c)
        self.mid = nn.ModuleList([block(c, c), block(c, c)])
        self.up = nn.ModuleList()
        for i in reversed(range(len(chans))):
            co = chans[i]
            for _ in range(blocks_per_level + 1):
                self.up.append(block(c + skip_ch.pop(), co))
                c = co
            if i > 0:
                self.up.append(Upsample(c))
        assert not skip_ch
        self.out_norm = nn.GroupNorm(groups, c)
        self.act = nn.SiLU()
        self.conv_out = nn.Conv2d(c, c_img, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _padding(self, h: int, w: int) -> tuple[int, int, int, int]:
        ph, pw = -h % self.multiple, -w % self.multiple
        return (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)

    def forward(self, x: Tensor, lam: Tensor) -> Tensor:
        """Predict the noise.

        Args:
            x: noisy images, shape [B, C, H, W].
            lam: log-SNR per sample, shape [B] (or a scalar).

        Returns:
            ε̂ of shape [B, C, H, W].
        """
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, self.event_shape))}], "
                f"got {tuple(x.shape)}"
            )
        w = self.conv_in.weight
        b, _, hh, ww = x.shape
        emb = self.embed(batch_lam(lam, b, w))
        pad = self._padding(hh, ww)
        h = x.to(w.dtype)
        if any(pad):
            h = F.pad(h, pad)
        h = self.conv_in(h)
        skips = [h]
        for m in self.down:
            h = m(h, emb) if isinstance(m, ResBlock) else m(h)
            skips.append(h)
        for m in self.mid:
            h = m(h, emb)
        for m in self.up:
            if isinstance(m, ResBlock):
                h = m(torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = m(h)
        h = self.conv_out(self.act(self.out_norm(h)))
        if any(pad):
            h = h[:, :, pad[2] : pad[2] + hh, pad[0] : pad[0] + ww]
        return h.to(x.dtype)
