"""The −log p vs PNG size figure: do simpler images (smaller PNGs) have higher log p?

The PNG figure runs on an exact oracle (exact log p) or on any learned model (PF-ODE log p).
"""

from __future__ import annotations

import io

import numpy as np
import torch

from cartoonist.data.sources import to_pixels
from cartoonist.diffusion import Keys, bits_per_dim, hd_sample, ode_log_prob, sample_sde
from cartoonist.diffusion.high_density import check_threshold
from cartoonist.errors import ConfigError
from cartoonist.figures.common import FigureData, fit_image_oracle

__all__ = ["png_size", "png_bytes"]


def png_bytes(x: torch.Tensor) -> int:
    """Size in bytes of one image [C, H, W] in [−1, 1] saved as an 8-bit PNG (zlib level 9)."""
    from PIL import Image

    k = to_pixels(x.float()).numpy().astype(np.uint8)
    img = Image.fromarray(k[0] if k.shape[0] == 1 else np.moveaxis(k, 0, -1))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.tell()


def png_size(
    source=None,
    seed: int = 0,
    n: int = 256,
    steps: int = 500,
    thresholds: tuple = (0.0,),
    components: int = 4,
    rank: int = 8,
    iters: int = 30,
    learned=None,
    ode_steps: int = 256,
    divergence: str = "hutchinson",
    probes: int = 1,
    batch_size: int | None = None,
) -> FigureData:
    """−log p of samples (regular SDE and HD) against their 8-bit PNG size, with Spearman ρ.

    On the exact oracle fitted to `source` (default), log p is exact. With a `learned` model
    (e.g. a pretrained diffusers UNet) the samples are that model's and log p is its PF-ODE
    estimate (`ode_log_prob`, Heun, Hutchinson): the oracle is then not fitted.

    Args:
        source: image source the oracle is fitted to (unused with `learned`).
        seed: keys the fit, the prior draws and all noise.
        n: samples per sampler; steps: their reverse-SDE / Algorithm 1 steps.
        thresholds: λ_thr of the HD samples (Algorithm 1, PF-ODE first stage) drawn from the same
            noise as the regular SDE samples.
        components, rank, iters: the oracle's mixture-of-PPCA fit.
        learned: a `LearnedModel` (built by the figure task from `model=`/`ckpt_path=`).
        ode_steps, divergence, probes: the learned model's PF-ODE log p.
        batch_size: learned model: samples per batch (None: all n at once); the numbers depend
            on it only through float round-off (all noise is keyed by sample id).

    Returns:
        FigureData. Rows: model, sampler, sample, neg_logp (−log p_{λ_max}, nats), bpd (bits/dim
        on 8-bit pixels), logp_kind ("exact" or "pf_ode"), png_bytes. Metrics: Spearman
        ρ(−log p, PNG size) over all samples (`spearman`) and per sampler, mean PNG bytes and
        bits/dim per sampler, n, and `logp_estimator` ("exact" or "pf_ode").
    """
    if learned is None:
        if source is None:
            raise ValueError("png_size needs an image source for the oracle (or a learned model)")
        gmm, data = fit_image_oracle(source, components, rank, iters, seed)
        sch, shape = gmm.schedule, tuple(data.shape[1:])
        x_T = sch.sample_prior((n, *shape), noise=Keys(seed), dtype=torch.float64)
        runs = {"sde": sample_sde(gmm, sch, x_T, steps, noise=Keys(seed), track_logp=False).x}
        for thr in thresholds:
            runs[f"hd λ_thr={thr:g}"] = hd_sample(
                gmm, sch, x_T, steps, lambda_threshold=thr, noise=Keys(seed)
            ).x
        logp = {k: gmm.log_prob(x, sch.lambda_max) for k, x in runs.items()}
        model, logjac = f"{source.name} oracle", float(source.log_jacobian)
        return _png_figure(runs, logp, "exact", model, logjac)
    runs, logp = _learned_runs(
        learned, seed, n, steps, thresholds, ode_steps, divergence, probes, batch_size
    )
    return _png_figure(runs, logp, "pf_ode", learned.name, learned.log_jacobian)


def _learned_runs(learned, seed, n, steps, thresholds, ode_steps, divergence, probes, batch_size):
    """A learned model's SDE and HD samples of the same noise, and their PF-ODE log p (CPU)."""
    sch, score = learned.schedule, learned.score
    for thr in thresholds:
        try:  # the sampler's own check, before any compute
            check_threshold(sch, thr, "compute.thresholds")
        except ValueError as e:
            raise ConfigError(f"{e}: outside the model's trained log-SNR range") from None
    bs = int(batch_size or n)
    runs: dict[str, list] = {"sde": [], **{f"hd λ_thr={t:g}": [] for t in thresholds}}
    logp: dict[str, list] = {k: [] for k in runs}
    for lo in range(0, n, bs):
        ids = list(range(lo, min(lo + bs, n)))
        x_T = sch.sample_prior(
            (len(ids), *learned.event_shape), noise=Keys(seed, ids), device=learned.device
        )
        sde = sample_sde(score, sch, x_T, steps, noise=Keys(seed, ids), track_logp=False)
        xs = {"sde": sde.x}
        for thr in thresholds:
            res = hd_sample(score, sch, x_T, steps, lambda_threshold=thr, noise=Keys(seed, ids))
            xs[f"hd λ_thr={thr:g}"] = res.x
        for k, x in xs.items():
            lp = ode_log_prob(
                score,
                sch,
                x,
                ode_steps,
                divergence=divergence,
                probes=probes,
                noise=Keys(seed, ids),
            ).logp
            runs[k].append(x.detach().cpu())
            logp[k].append(lp.detach().cpu().double())
    return {k: torch.cat(v) for k, v in runs.items()}, {k: torch.cat(v) for k, v in logp.items()}


def _png_figure(runs: dict, logp: dict, kind: str, model: str, log_jacobian: float) -> FigureData:
    """Rows and metrics of the figure from samples and their log p (nats) per sampler."""
    from torchmetrics.functional import spearman_corrcoef

    out = FigureData()
    out.metrics["logp_estimator"] = kind
    nlp_all, size_all = [], []
    for name, x in runs.items():
        nlp = -logp[name]
        n, dim = x.shape[0], x[0].numel()
        bpd = bits_per_dim(-nlp, dim, log_jacobian)
        sizes = torch.tensor([png_bytes(x[i]) for i in range(n)], dtype=torch.float64)
        out.metrics[f"spearman[{name}]"] = float(spearman_corrcoef(nlp, sizes))
        out.metrics[f"mean_png_bytes[{name}]"] = float(sizes.mean())
        out.metrics[f"mean_bpd[{name}]"] = float(bpd.mean())
        nlp_all.append(nlp)
        size_all.append(sizes)
        out.rows += [
            dict(
                model=model,
                sampler=name,
                sample=i,
                neg_logp=float(nlp[i]),
                bpd=float(bpd[i]),
                logp_kind=kind,
                png_bytes=int(sizes[i]),
            )
            for i in range(n)
        ]
    out.metrics["spearman"] = float(spearman_corrcoef(torch.cat(nlp_all), torch.cat(size_all)))
    out.metrics["n"] = int(sum(len(v) for v in nlp_all))
    return out
