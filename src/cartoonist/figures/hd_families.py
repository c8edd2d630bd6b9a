"""HD samples at several thresholds beside regular samples of the same noise, each with its log p.

The paper's Fig. 1/6-style comparison for any model the pipeline builds (`model=diffusers`,
`edm`, a checkpoint, …) or, by default, an exact oracle fitted to an image source.

Sample i of every column starts from the same prior draw and uses the same noise, keyed by
(seed, i): the regular column is the reverse SDE (Theorem 1 carries its log p, free); the column
λ_thr is Algorithm 1 with an SDE first stage, so it follows *the same* SDE path down to λ_thr and
then the HD-ODE (its log p carried on by the Lemma, one JVP per step, Hutchinson). On an oracle the
log p is exact instead. Log p is log p_{λ_max}(x) of the model's marginal in the space the model
samples (pixels in [−1, 1] here; a latent model's latent), in nats, with bits/dim on 8-bit pixels.
"""

from __future__ import annotations

import torch

from cartoonist.data.sources import to_pixels
from cartoonist.diffusion import Keys, bits_per_dim, hd_sample, sample_sde
from cartoonist.diffusion.high_density import check_threshold
from cartoonist.errors import ConfigError
from cartoonist.figures.common import FigureData, fit_image_oracle

__all__ = ["hd_families"]


def hd_families(
    source=None,
    seed: int = 0,
    n: int = 4,
    steps: int = 500,
    thresholds: tuple = (-4.0, 0.0, 4.0),
    components: int = 4,
    rank: int = 8,
    iters: int = 30,
    learned=None,
    probes: int = 1,
) -> FigureData:
    """N regular and n HD samples per threshold from the same noise, each with its log p.

    Args:
        source: image source of the default exact oracle (a mixture of PPCA fitted to it);
            unused with `learned`.
        seed: keys the fit, the prior draws and all noise.
        n: samples per column; steps: reverse-SDE / Algorithm 1 steps (the same grid).
        thresholds: λ_thr of the HD columns, each in [λ_min, λ_max) of the model.
        components, rank, iters: the oracle's fit.
        learned: a `LearnedModel` (the figure task builds it from `model=`/`ckpt_path=`).
        probes: Hutchinson probes of the HD-ODE's log p (learned model).

    Returns:
        FigureData. Rows: model, column ("regular SDE" or "HD λ_thr=…"), threshold (None for
        regular), sample, logp (nats), bpd (8-bit pixels), logp_kind ("exact" on an oracle,
        "tracked": Theorem 1 / Lemma along the sampler), shape ("CxHxW") and pixels (8-bit values,
        space-separated) of the image. Metrics: mean log p per column, n, logp_estimator.
    """
    if learned is None:
        if source is None:
            raise ValueError(
                "hd_families needs an image source for the oracle (or a learned model)"
            )
        gmm, data = fit_image_oracle(source, components, rank, iters, seed)
        score, sch, shape = gmm, gmm.schedule, tuple(data.shape[1:])
        model, logjac, kind = f"{source.name} oracle", float(source.log_jacobian), "exact"
        dtype, device = torch.float64, "cpu"
    else:
        score, sch, shape = learned.score, learned.schedule, tuple(learned.event_shape)
        model, logjac, kind = learned.name, float(learned.log_jacobian), "tracked"
        dtype, device = torch.float32, learned.device
    for thr in thresholds:
        try:  # the sampler's own check, before any compute
            check_threshold(sch, thr, "compute.thresholds")
        except ValueError as e:
            raise ConfigError(f"{e}: outside the model's log-SNR range") from None
    ids = list(range(n))
    x_T = sch.sample_prior((n, *shape), noise=Keys(seed, ids), dtype=dtype, device=device)
    track = kind == "tracked"
    res = sample_sde(score, sch, x_T, steps, noise=Keys(seed, ids), track_logp=track)
    columns = {"regular SDE": (None, res)}
    for thr in thresholds:
        hd = hd_sample(
            score,
            sch,
            x_T,
            steps,
            lambda_threshold=float(thr),
            first_stage="sde",
            noise=Keys(seed, ids),
            track_logp=track,
            probes=probes,
        )
        columns[f"HD λ_thr={thr:g}"] = (float(thr), hd)
    out = FigureData()
    out.metrics["logp_estimator"] = kind
    for name, (thr, r) in columns.items():
        x = r.x.detach().double().cpu()
        lp = r.logp.detach().double().cpu() if track else gmm.log_prob(x, sch.lambda_max)
        bpd = bits_per_dim(lp, x[0].numel(), logjac)
        out.metrics[f"mean_logp[{name}]"] = float(lp.mean())
        out.metrics[f"mean_bpd[{name}]"] = float(bpd.mean())
        k = to_pixels(x.float())
        for i in range(n):
            out.rows.append(
                dict(
                    model=model,
                    column=name,
                    threshold=thr,
                    sample=i,
                    logp=float(lp[i]),
                    bpd=float(bpd[i]),
                    logp_kind=kind,
                    shape="x".join(str(s) for s in shape),
                    pixels=" ".join(str(int(v)) for v in k[i].flatten().tolist()),
                )
            )
    out.metrics["n"] = n
    return out
