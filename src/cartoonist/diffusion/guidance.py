"""Classifier-free guidance, and the conditional model's log-density along a guided ODE.

Guidance (Ho & Salimans 2022) with scale w combines the conditional score s_c = ∇log p_λ(x | c)
and the unconditional one s_u = ∇log p_λ(x):

    s_w = s_u + w (s_c − s_u) = (1 − w) s_u + w s_c.

For w ≠ 1 the field s_w is not the score of any diffusion marginal (the tilted p_u^{1−w} p_c^w,
renormalised, is not closed under the forward noising), so the guided samplers' Theorem-1 r is
not the log-density of anything. What is well defined is log p_λ(x | c) of the *conditional*
model evaluated along the guided path. A guided ODE of "velocity" η (η = 1: guided PF-ODE,
η = 2: guided HD-ODE) is dx/dλ = w_η(x, λ) = f̃ x + (η/2) σ² s_w, and the paper's Lemma
(digest §3.6, `cartoonist.diffusion.any_ode`) with the density of s_c gives

    d log p_λ(x_λ | c)/dλ = −D f̃ − ½ σ² Δ log p_λ(x | c) + (w_η − f̃ x − ½ σ² s_c)ᵀ s_c,

one Jacobian-vector product of s_c per step (the Laplacian) plus one evaluation of s_u. At w = 1
it is the ordinary tracked log p of `sample_ode` / `hd_sample`.

The functions here follow the sampler contract (`cartoonist.diffusion.contract`) with the
conditional score as `score` and the unconditional one as `uncond`.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor

from cartoonist.diffusion.any_ode import Velocity, ode_log_prob_along
from cartoonist.diffusion.contract import check_choice, check_inputs, initial_logp
from cartoonist.diffusion.high_density import HD_VELOCITY, _stage_grids, hd_sample
from cartoonist.diffusion.ode_likelihood import PF_VELOCITY, sample_ode
from cartoonist.diffusion.results import SampleResult
from cartoonist.diffusion.rng import next_stage
from cartoonist.diffusion.schedules import Schedule
from cartoonist.diffusion.score import lam_batch

__all__ = [
    "guided_score",
    "guided_velocity",
    "guided_sample_ode",
    "guided_hd_sample",
    "sample_guided",
]


def _bc(v: Tensor, x: Tensor) -> Tensor:
    return v.reshape(-1, *[1] * (x.dim() - 1)).to(x.dtype)


def guided_score(score: Callable, uncond: Callable, guidance: float) -> Callable:
    """s_w(x, λ) = s_u + w (s_c − s_u) from the conditional `score` and `uncond`."""
    w = float(guidance)

    def s_w(x: Tensor, lam) -> Tensor:
        s_c = score(x, lam)
        return s_c if w == 1.0 else s_c + (1.0 - w) * (uncond(x, lam) - s_c)

    return s_w


def guided_velocity(uncond: Callable, schedule: Schedule, guidance: float, eta: float) -> Velocity:
    """w_η(x, λ, s_c) = f̃ x + (η/2) σ² ((1 − w) s_u(x, λ) + w s_c), for `ode_log_prob_along`."""
    w, eta = float(guidance), float(eta)

    def velocity(x: Tensor, lam: Tensor, s_c: Tensor) -> Tensor:
        lb = lam_batch(lam, x)
        f, g2 = _bc(schedule.f_tilde(lb), x), _bc(schedule.g2(lb), x)
        s_w = s_c if w == 1.0 else s_c + (1.0 - w) * (uncond(x, lb) - s_c)
        return f * x + (0.5 * eta) * g2 * s_w

    return velocity


def guided_sample_ode(
    score,
    uncond,
    schedule: Schedule,
    x: Tensor,
    steps: int | None = 256,
    *,
    guidance: float,
    grid=None,
    method: str = "heun",
    track_logp: bool = True,
    logp_init=None,
    divergence: str = "hutchinson",
    probes: int = 1,
    backend: str = "auto",
    noise=None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    record: bool = False,
) -> SampleResult:
    """The guided PF-ODE (noise → data) with log p(x | c) of the conditional model (Lemma).

    Args:
        score: the conditional score s_c; uncond: the unconditional s_u; guidance: w.
        (the rest as `sample_ode`; `track_logp` must be true: without it use `sample_ode` on
        `guided_score`.)

    Returns:
        SampleResult(x [B, ...] at λ_max, logp [B] = log p_{λ_max}(x | c) nats, nfe of s_c).
    """
    if not track_logp:
        raise ValueError("guided_sample_ode tracks log p(x | c); without it run sample_ode")
    v = guided_velocity(uncond, schedule, guidance, PF_VELOCITY)
    return ode_log_prob_along(
        score,
        schedule,
        x,
        steps,
        grid=grid,
        velocity=v,
        logp_init=logp_init,
        method=method,
        divergence=divergence,
        probes=probes,
        backend=backend,
        noise=noise,
        rtol=rtol,
        atol=atol,
        record=record,
    )


def guided_hd_sample(
    score,
    uncond,
    schedule: Schedule,
    x: Tensor,
    steps: int | None = 1000,
    *,
    guidance: float,
    lambda_threshold: float,
    grid=None,
    first_stage: str = "ode",
    method: str = "euler",
    noise=None,
    track_logp: bool = True,
    logp_init=None,
    divergence: str = "hutchinson",
    probes: int = 1,
    backend: str = "auto",
    record: bool = False,
) -> SampleResult:
    """Algorithm 1 on the guided field, with log p(x | c) of the conditional model (Lemma).

    The guided PF-ODE runs to λ_thr, then the guided HD-ODE to λ_max; the Lemma carries the
    conditional model's log-density through both stages. Args as `hd_sample`, plus `uncond`
    (s_u) and `guidance` (w); the first stage must be "ode" (a guided SDE stage has no density
    to carry). The stages draw their probes from `noise` and
    `next_stage(noise)`, as `hd_sample`, so at w = 1 the result is `hd_sample`'s.
    """
    if not track_logp:
        raise ValueError("guided_hd_sample tracks log p(x | c); without it run hd_sample")
    check_choice(first_stage, ("ode",), "first_stage (guided, log p tracked)")
    x = check_inputs(x, schedule, noise)
    grid1, grid2 = _stage_grids(schedule, lambda_threshold, steps, grid)
    n1 = grid1.numel() - 1
    lp = initial_logp(schedule, x, grid1, logp_init, True)
    common = dict(method=method, divergence=divergence, probes=probes, backend=backend)
    if n1 == 0:
        stage1 = SampleResult(x=x, logp=lp, nfe=0)
    else:
        v1 = guided_velocity(uncond, schedule, guidance, PF_VELOCITY)
        stage1 = ode_log_prob_along(
            score, schedule, x, grid=grid1, velocity=v1, logp_init=lp, noise=noise, **common
        )
    v2 = guided_velocity(uncond, schedule, guidance, HD_VELOCITY)
    stage2 = ode_log_prob_along(
        score,
        schedule,
        stage1.x,
        grid=grid2,
        velocity=v2,
        logp_init=stage1.logp,
        noise=next_stage(noise),
        **common,
    )
    return SampleResult(
        x=stage2.x,
        logp=stage2.logp,
        nfe=stage1.nfe + stage2.nfe,
        info={"steps": (n1, grid2.numel() - 1), "first_stage": first_stage, "guidance": guidance},
    )


_GUIDED = {sample_ode: guided_sample_ode, hd_sample: guided_hd_sample}


def sample_guided(
    sampler, score, uncond, guidance: float, schedule: Schedule, x: Tensor, noise=None
) -> tuple[SampleResult, bool]:
    """Run a configured sampler (a `functools.partial` of a sampler) on the guided field.

    When it is `sample_ode` or `hd_sample` (first stage "ode") with `track_logp`, its guided
    variant above runs and the result's logp is log p(x | c) of the conditional model (Lemma).
    Otherwise the sampler runs on `guided_score` and its logp, not a log-density, is dropped.

    Returns:
        (SampleResult, whether its logp is log p(x | c)); nfe counts s_c and s_u evaluations.
    """
    calls = [0]

    def counted_uncond(x: Tensor, lam) -> Tensor:
        calls[0] += 1
        return uncond(x, lam)

    fn = getattr(sampler, "func", sampler)
    kw = dict(getattr(sampler, "keywords", {}) or {})
    args = tuple(getattr(sampler, "args", ()) or ())
    variant = _GUIDED.get(fn)
    if variant is not None and kw.get("track_logp") and kw.get("first_stage", "ode") == "ode":
        res = variant(
            score, counted_uncond, schedule, x, *args, guidance=guidance, noise=noise, **kw
        )
        res.nfe += calls[0]
        return res, True
    res = sampler(guided_score(score, counted_uncond, guidance), schedule, x, noise=noise)
    return SampleResult(x=res.x, logp=None, nfe=res.nfe + calls[0], info=res.info), False
