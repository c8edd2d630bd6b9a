"""Figure 1 ("cartoons"): the HD-ODE mode of p(x_0 | x_t) against posterior samples and the mean.

For several x_t the columns are x_t/α_t | HD-ODE mode y_0 | samples x_0 ~ p(x_0 | x_t) |
E[x_0 | x_t], each image with its log p_{λ_max} in nats (model space, per image):

(a) on exact oracles (mixtures of PPCA fitted to image sets): exact posterior samples, exact
    posterior means and exact log p;
(b) on a learned score (`LearnedModel`, e.g. the digits U-Net): posterior samples by the reverse
    SDE started from x_t at λ_t, the mean by Tweedie's formula, and log p by the PF-ODE (an
    estimate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from cartoonist.diffusion import (
    Keys,
    Schedule,
    hd_ode,
    ode_log_prob,
    posterior_mean,
    sample_sde,
)
from cartoonist.errors import ConfigError
from cartoonist.figures.common import FigureData, fit_image_oracle

__all__ = ["LearnedModel", "fig1_hd_samples", "learned_columns", "learned_log_prob"]

POSTERIOR = "x_0 ~ p(x_0|x_t)"


@dataclass
class LearnedModel:
    """A learned diffusion model as the figures use it.

    Attributes:
        name: label of its rows in the figure, e.g. "digits (U-Net)".
        score: score function (x [B, ...], lam [B]) -> ∇_x log p_λ(x) [B, ...]; an nn.Module
            computes on the device of its parameters (`device`).
        schedule: the schedule the score was trained with (λ_max is the data end).
        data: [N, ...] images in model space (CPU), or None when the run names no data set;
            Fig. 1 noises some of them to x_t, figures that only sample need none.
        event_shape: shape of one example; None: that of `data`.
        log_jacobian: D log|a| (nats) of the 8-bit pixel → model-space map, for bits/dim
            (D log(2/256) for images in [−1, 1]).
    """

    name: str
    score: Callable[[Tensor, Tensor], Tensor]
    schedule: Schedule
    data: Tensor | None = None
    event_shape: tuple | None = None
    log_jacobian: float = 0.0

    def __post_init__(self):
        if self.event_shape is None:
            if self.data is None:
                raise ValueError(f"learned model {self.name!r}: give data or event_shape")
            self.event_shape = tuple(self.data.shape[1:])
        self.event_shape = tuple(int(s) for s in self.event_shape)

    @property
    def device(self) -> torch.device:
        """Where the score computes: its parameters' device (CPU for a plain function)."""
        params = getattr(self.score, "parameters", None)
        first = next(iter(params()), None) if callable(params) else None
        return first.device if first is not None else torch.device("cpu")


def _noised(data: Tensor, schedule: Schedule, lambda_t: float, n_rows: int, g, dtype):
    """n_rows images of `data` (chosen by g) noised to log-SNR λ_t: x_t [n_rows, ...]."""
    if n_rows > data.shape[0]:
        raise ValueError(f"n_rows={n_rows} exceeds the {data.shape[0]} images available")
    x0 = data[torch.randperm(data.shape[0], generator=g)[:n_rows]].to(dtype)
    a, s = float(schedule.alpha(lambda_t)), float(schedule.sigma(lambda_t))
    return a * x0 + s * torch.randn(x0.shape, generator=g, dtype=dtype)


def learned_columns(
    model: LearnedModel,
    x_t: Tensor,
    lambda_t: float,
    steps: int,
    n_posterior: int,
    sde_steps: int,
    seed: int = 0,
) -> dict[str, Tensor]:
    """The figure's columns for a learned score: column name -> images [B, ...].

    Args:
        model: the learned model.
        x_t: [B, ...] states at log-SNR λ_t.
        lambda_t: log-SNR of x_t.
        steps: Heun steps of the HD-ODE from λ_t to λ_max.
        n_posterior: posterior samples per x_t, from the reverse SDE (Euler–Maruyama) λ_t → λ_max.
        sde_steps: Euler–Maruyama steps of that SDE.
        seed: keys the Brownian paths (sample j of row r has id j·B + r).

    Returns:
        {"x_t / α_t", "HD-ODE y_0", "x_0 ~ p(x_0|x_t) #1".., "E[x_0|x_t]"} -> [B, ...].
    """
    sch, score, B = model.schedule, model.score, x_t.shape[0]
    cols = {
        "x_t / α_t": x_t / float(sch.alpha(lambda_t)),
        "HD-ODE y_0": hd_ode(score, sch, x_t, steps, lambda_start=lambda_t, method="heun").x,
    }
    reps = x_t.repeat(n_posterior, *([1] * (x_t.dim() - 1)))
    grid = sch.grid(sde_steps, lambda_t, sch.lambda_max)
    post = sample_sde(score, sch, reps, grid=grid, noise=Keys(seed), track_logp=False).x
    for j in range(n_posterior):
        cols[f"{POSTERIOR} #{j + 1}"] = post[j * B : (j + 1) * B]
    cols["E[x_0|x_t]"] = posterior_mean(score, sch, x_t, lambda_t)
    return cols


def learned_log_prob(
    model: LearnedModel,
    x: Tensor,
    steps: int = 256,
    divergence: str = "hutchinson",
    probes: int = 1,
    seed: int = 0,
) -> Tensor:
    """PF-ODE log p_{λ_max}(x) under a learned score, [B] nats (an estimate, not exact).

    Args:
        model: the learned model.
        x: [B, ...] images in model space.
        steps: Heun steps of the encoding λ_max → λ_min.
        divergence: "hutchinson" (probes keyed by (seed, image index)) or "exact" (D JVPs).
        probes: Hutchinson probes per evaluation.
        seed: keys the probes.
    """
    res = ode_log_prob(
        model.score,
        model.schedule,
        x,
        steps,
        divergence=divergence,
        probes=probes,
        noise=Keys(seed),
    )
    return res.logp


def _oracle_columns(gmm, x_t, lambda_t, steps, n_posterior, g) -> dict[str, Tensor]:
    """Columns of an exact oracle: HD-ODE on its score, exact posterior samples and mean."""
    cols = {
        "x_t / α_t": x_t / float(gmm.schedule.alpha(lambda_t)),
        "HD-ODE y_0": hd_ode(
            gmm, gmm.schedule, x_t, steps, lambda_start=lambda_t, method="heun"
        ).x,
    }
    for j in range(n_posterior):
        cols[f"{POSTERIOR} #{j + 1}"] = gmm.sample_posterior(x_t, lambda_t, g)
    cols["E[x_0|x_t]"] = gmm.posterior_mean(x_t, lambda_t)
    return cols


def _add(out: FigureData, dname: str, cols: dict, logp: dict, kind: str) -> None:
    """Rows (one per image) and metrics (mean log p per column, HD gain) of one dataset."""
    suffix = "" if kind == "exact" else f"_{kind}"
    post = []
    for c, (name, imgs) in enumerate(cols.items()):
        lp = logp[name]
        if c:
            out.metrics[f"{dname}: mean_logp{suffix}[{name}]"] = float(lp.mean())
        if name.startswith(POSTERIOR):
            post.append(lp)
        shape = "x".join(map(str, imgs.shape[1:]))
        for r in range(imgs.shape[0]):
            out.rows.append(
                dict(
                    dataset=dname,
                    row=r,
                    col=c,
                    column=name,
                    logp=float(lp[r]),
                    logp_kind=kind,
                    shape=shape,
                    pixels=" ".join(f"{v:.4f}" for v in imgs[r].flatten().tolist()),
                )
            )
    mean_post = float(torch.stack(post).mean()) if post else float("nan")
    out.metrics[f"{dname}: mean_logp{suffix}[posterior samples]"] = mean_post
    out.metrics[f"{dname}: hd_gain_over_posterior_nats"] = (
        float(logp["HD-ODE y_0"].mean()) - mean_post
    )


def fig1_hd_samples(
    sources: dict,
    seed: int = 0,
    n_rows: int = 4,
    n_posterior: int = 4,
    lambda_t: float = 0.0,
    steps: int = 400,
    components: int = 4,
    rank: int = 8,
    iters: int = 30,
    learned: LearnedModel | None = None,
    sde_steps: int = 500,
    ode_steps: int = 256,
    divergence: str = "hutchinson",
    probes: int = 1,
) -> FigureData:
    """For several x_t: x_t | HD-ODE mode y_0 | posterior samples x_0 ~ p(x_0|x_t) | E[x_0|x_t].

    Args:
        sources: name -> image source; an exact oracle (mixture of PPCA) is fitted to each.
        seed: seeds the fits, the choice of x_0 and all noise.
        n_rows: x_t per dataset; n_posterior: posterior samples per x_t.
        lambda_t: log-SNR of x_t; steps: Heun steps of the HD-ODE to λ_max.
        components, rank, iters: the PPCA mixture fits.
        learned: a learned model (part b), built by the figure task from the run's config.
        sde_steps: reverse-SDE steps λ_t → λ_max for the learned model's posterior samples.
        ode_steps, divergence, probes: its PF-ODE log p (Heun steps; "hutchinson" or "exact").

    Returns:
        FigureData: one row per image (dataset, row, column, log p_{λ_max} in nats, logp_kind
        "exact" or "pf_ode", shape, pixels in model space); metrics per dataset: the mean log p of
        each column (`<name>: mean_logp[...]`, `mean_logp_pf_ode[...]` for the learned model), of
        all posterior samples, and the HD mode's gain over them in nats.
    """
    if learned is not None and learned.data is None:
        raise ConfigError(
            f"fig1 part (b) noises images of the learned model's data set to x_t: give "
            f"dataset=<the images {learned.name} models> (or drop part (b) with ~model)"
        )
    out = FigureData()
    for dname, source in sources.items():
        gmm, data = fit_image_oracle(source, components, rank, iters, seed)
        g = torch.Generator().manual_seed(seed)
        x_t = _noised(data, gmm.schedule, lambda_t, n_rows, g, torch.float64)
        cols = _oracle_columns(gmm, x_t, lambda_t, steps, n_posterior, g)
        logp = {k: gmm.log_prob(v, gmm.schedule.lambda_max) for k, v in cols.items()}
        _add(out, dname, cols, logp, "exact")
    if learned is not None:
        g = torch.Generator().manual_seed(seed)
        x_t = _noised(learned.data, learned.schedule, lambda_t, n_rows, g, learned.data.dtype)
        x_t = x_t.to(learned.device)
        cols = learned_columns(learned, x_t, lambda_t, steps, n_posterior, sde_steps, seed)
        lp = learned_log_prob(
            learned, torch.cat(list(cols.values())), ode_steps, divergence, probes, seed
        )
        logp = dict(zip(cols, lp.cpu().split(n_rows)))
        cols = {k: v.cpu() for k, v in cols.items()}
        _add(out, learned.name, cols, logp, "pf_ode")
    return out
