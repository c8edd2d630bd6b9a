"""Exact oracles fitted to images (used by Fig. 1), and the −log p vs PNG size figure."""

from __future__ import annotations

import io

import numpy as np
import torch

from cartoonist.data.sources import to_pixels
from cartoonist.diffusion import VP, hd_sample, sample_sde
from cartoonist.figures.common import FigureData

__all__ = ["fit_image_oracle", "png_size", "png_bytes"]


def fit_image_oracle(
    source,
    components: int,
    rank: int,
    iters: int,
    seed: int,
    lambda_min: float = -10.0,
    lambda_max: float = 10.0,
):
    """A mixture of PPCA fitted to an image source: an exact diffusion model of those images."""
    from cartoonist.oracles import fit_mppca

    data = source.load()
    return fit_mppca(
        data, components, rank, iters=iters, seed=seed, schedule=VP(lambda_min, lambda_max)
    ), data


def png_bytes(x: torch.Tensor) -> int:
    """Size in bytes of one image [C, H, W] in [−1, 1] saved as an 8-bit PNG (zlib level 9)."""
    from PIL import Image

    k = to_pixels(x.float()).numpy().astype(np.uint8)
    img = Image.fromarray(k[0] if k.shape[0] == 1 else np.moveaxis(k, 0, -1))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.tell()


def png_size(
    source,
    seed: int = 0,
    n: int = 256,
    steps: int = 500,
    thresholds: tuple = (0.0,),
    components: int = 4,
    rank: int = 8,
    iters: int = 30,
) -> FigureData:
    """−log p of samples (regular SDE and HD) against their 8-bit PNG size, with Spearman ρ.

    Rows: sampler, sample, log p (nats), PNG bytes. Metrics: Spearman ρ(−log p, PNG size) over all
    samples (`spearman`), per sampler, and n.
    """
    from torchmetrics.functional import spearman_corrcoef

    gmm, data = fit_image_oracle(source, components, rank, iters, seed)
    sch = gmm.schedule
    x_T = sch.sample_prior((n, *data.shape[1:]), seed=seed, dtype=torch.float64)
    runs = {"sde": sample_sde(gmm, sch, x_T, steps, seed=seed, track_logp=False).x}
    for thr in thresholds:
        runs[f"hd λ_thr={thr:g}"] = hd_sample(gmm, sch, x_T, thr, steps, seed=seed).x
    out = FigureData()
    nlp_all, size_all = [], []
    for name, x in runs.items():
        nlp = -gmm.log_prob(x, sch.lambda_max)
        sizes = torch.tensor([png_bytes(x[i]) for i in range(n)], dtype=torch.float64)
        out.metrics[f"spearman[{name}]"] = float(spearman_corrcoef(nlp, sizes))
        out.metrics[f"mean_png_bytes[{name}]"] = float(sizes.mean())
        nlp_all.append(nlp)
        size_all.append(sizes)
        out.rows += [
            dict(sampler=name, sample=i, neg_logp=float(nlp[i]), png_bytes=int(sizes[i]))
            for i in range(n)
        ]
    out.metrics["spearman"] = float(spearman_corrcoef(torch.cat(nlp_all), torch.cat(size_all)))
    out.metrics["n"] = int(sum(len(v) for v in nlp_all))
    return out
