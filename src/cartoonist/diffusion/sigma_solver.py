"""method="adaptive": an error-controlled Dormand–Prince 5(4) in σ̄ = e^{−λ/2} for log p along ODEs.

Three changes to the usual adaptive solve (k-diffusion's and score_sde's dopri5 in σ with a
relative tolerance on the log-density), each measured in `benchmarks/pf_ode_cost.py` (Q4):

1. **Time and state.** The ODE dx/dλ = w (digest §3.6) is integrated in σ̄ = σ_λ/α_λ = e^{−λ/2}
   on the rescaled state y = x/α_λ (the variables of Karras et al. 2022, §3): there the PF-ODE
   of Gaussian-like data is close to linear at high noise, and any schedule (VP, VE, flow) looks
   the same. With dλ/dσ̄ = −2/σ̄ and f̃ = d log α/dλ:

       dy/dσ̄ = (w − f̃ x)/α · (−2/σ̄),      d log p/dσ̄ = (d log p/dλ) · (−2/σ̄).

2. **A Gaussian control variate for the log-density.** The integrand d log p/dλ of the Lemma is
   dominated by the part a Gaussian would have: for data N(0, c² I) the PF-ODE gives exactly
   (−div w, eq. 4 of Chen et al. 2018)

       r(λ) = −D f̃(λ) + (D/2) / (1 + c² e^λ),
       R(λ) = ∫ r dλ = −D log α_λ − (D/2) log(e^{−λ} + c²).

   We integrate d log p/dλ − r(λ) numerically and add R(λ₁) − R(λ₀) in closed form. This is exact
   for any c² (it subtracts and adds the same known function of λ); c² only sets how much is left
   to integrate. The default c² = 0.25 is EDM's σ_data² (data scaled to [−1, 1]); on the digits
   oracle c² ∈ [0.25, 1] gave errors within 2.5× of each other at a fixed tolerance, c² = 0 (no
   Gaussian scale) 5–40× larger ones (measured with the usual relative log p tolerance).
3. **Error control on what is reported.** log p is controlled in absolute nats (the local error
   estimate of every sample's log p ≤ atol), y by the usual mixed norm (RMS of the error over
   atol + rtol·|y|). A relative tolerance on an accumulated log-density (the usual choice) lets a
   step's error grow with the integral so far. Stage 2 of Dormand–Prince has weight 0 in both
   the 5th- and 4th-order solutions, so it is evaluated without the divergence (no JVP/VJP).

Steps are shared by the batch (the error norms run over all of it), so, like any adaptive solve
of a batch, a sample's numbers depend slightly (within the tolerance) on its batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from cartoonist.diffusion.results import Trajectory

__all__ = ["integrate_sigma", "gaussian_reference", "DEFAULT_REFERENCE_VAR", "MAX_STEPS"]

DEFAULT_REFERENCE_VAR = 0.25  # c² of the control variate: EDM's σ_data² (Karras et al. 2022)
MAX_STEPS = 100_000

# Dormand & Prince (1980), RK5(4)7M: stages, nodes, 5th-order weights (= the last stage row, FSAL)
# and the 4th-order embedded weights.
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_E = tuple(b5 - b4 for b5, b4 in zip(_A[6] + (0.0,), _B4))  # 5th − 4th order: the error weights


def gaussian_reference(schedule, dim: int, var: float = DEFAULT_REFERENCE_VAR):
    """The control variate's (r, R): d log p/dλ along the PF-ODE of N(0, var·I) data, and ∫ r dλ.

    Args:
        schedule: the diffusion schedule (α_λ, f̃).
        dim: D, the dimension of one sample.
        var: c² ≥ 0, the reference variance per dimension.

    Returns:
        (r(lam) -> float64 0-d tensor in nats per unit λ, R(lam) -> float64 0-d tensor in nats),
        both for a 0-d float64 λ.
    """

    def r(lam: Tensor) -> Tensor:
        ft = schedule.f_tilde(lam).to(torch.float64)
        return -dim * ft + 0.5 * dim / (1.0 + var * torch.exp(lam))

    def big_r(lam: Tensor) -> Tensor:
        log_alpha = 0.5 * schedule.log_alpha2(lam).to(torch.float64)
        return -dim * log_alpha - 0.5 * dim * torch.log(torch.exp(-lam) + var)

    return r, big_r


def _rms(e: Tensor, y0: Tensor, y1: Tensor, rtol: float, atol: float) -> float:
    scale = atol + rtol * torch.maximum(y0.abs(), y1.abs())
    return float((e / scale).square().mean().sqrt())


def integrate_sigma(
    drift,
    drift_plain,
    schedule,
    x: Tensor,
    lam0: float,
    lam1: float,
    *,
    acc: Tensor | None,
    rtol: float,
    atol: float,
    reference_var: float = DEFAULT_REFERENCE_VAR,
    score=None,
    record: bool = False,
) -> tuple[Tensor, Tensor | None, Trajectory | None]:
    """Integrate dx/dλ = w (and d log p/dλ) from λ₀ to λ₁ with the σ̄-time Dormand–Prince 5(4).

    Args:
        drift: (x [B, ...], lam 0-d float64) -> (w [B, ...], d log p/dλ [B] or None).
        drift_plain: the same without the divergence: (x, lam) -> (w, None).
        schedule: the diffusion schedule (for α, f̃ and the control variate).
        x: [B, ...] the state at λ₀.
        lam0, lam1: the ends (either direction).
        acc: [B] float64 initial accumulator (nats), or None when log p is not tracked.
        rtol, atol: y is held to RMS(err / (atol + rtol |y|)) ≤ 1 per step; log p to
            |err| ≤ atol nats per step and sample.
        reference_var: c² of the Gaussian control variate (module docstring).
        score: the CountedScore in use, told which step runs (for error messages).
        record: keep the state (and Δ log p) at every accepted step.

    Returns:
        (x at λ₁ [B, ...], acc + ∫ d log p/dλ dλ [B] float64 or None, Trajectory or None).
    """
    dtype, dev = x.dtype, x.device
    f64 = torch.float64
    track = acc is not None
    D = x[0].numel()
    r_fn, big_r = gaussian_reference(schedule, D, reference_var)
    t0, t1 = math.exp(-0.5 * lam0), math.exp(-0.5 * lam1)
    lo, hi = min(t0, t1), max(t0, t1)

    def lam_of(tau: float) -> Tensor:
        return torch.tensor(-2.0 * math.log(min(max(tau, lo), hi)), dtype=f64)

    def f(y: Tensor, tau: float, with_logp: bool):
        lam = lam_of(tau)
        a = float(schedule.alpha(lam))
        ft = float(schedule.f_tilde(lam))
        xs = (a * y).to(dtype)
        w, dl = (drift if with_logp else drift_plain)(xs, lam)
        dld = -2.0 / tau  # dλ/dσ̄
        dy = ((w.to(f64) - ft * a * y) / a) * dld
        da = (dl.to(f64) - r_fn(lam)) * dld if with_logp else None
        return dy, da

    y = x.to(f64) / float(schedule.alpha(lam_of(t0)))
    a_acc = torch.zeros(x.shape[0], dtype=f64, device=dev) if track else None
    direction = 1.0 if t1 > t0 else -1.0
    span = abs(t1 - t0)
    k1 = f(y, t0, track)
    h = direction * _initial_step(f, y, t0, k1[0], direction, span, rtol, atol)
    t, steps = t0, 0
    xs_rec, lp_rec, lam_rec = ([x], [torch.zeros_like(a_acc) if track else None], [lam0])
    while direction * (t1 - t) > 0:
        if steps >= MAX_STEPS:
            raise RuntimeError(
                f"method='adaptive' took {MAX_STEPS} steps without reaching λ={lam1:.4g}; the ODE "
                f"is too stiff for rtol={rtol:g}, atol={atol:g}: loosen them or use a fixed grid"
            )
        if direction * (t + h - t1) > 0 or abs(t1 - (t + h)) < 1e-12 * span:
            h = t1 - t
        if score is not None:
            score.where = f" at adaptive step {steps} (λ={float(lam_of(t)):.4g})"
        ks = [k1]
        for i in range(1, 7):
            yi = y + h * sum(a * k[0] for a, k in zip(_A[i], ks) if a != 0.0)
            # Stage 2 has weight 0 in both solutions: no divergence needed there.
            ks.append(f(yi, t + _C[i] * h, track and i != 1))
        y_new = yi  # stage 7 is evaluated at the 5th-order solution (FSAL)
        err = _rms(h * sum(e * k[0] for e, k in zip(_E, ks) if e != 0.0), y, y_new, rtol, atol)
        if track:
            a_new = a_acc + h * sum(b * k[1] for b, k in zip(_A[6], ks) if b != 0.0)
            e_lp = h * sum(e * k[1] for e, k in zip(_E, ks) if e != 0.0)
            err = max(err, float(e_lp.abs().max()) / atol)
        if not math.isfinite(err):
            raise FloatingPointError(
                f"the state became NaN/inf at adaptive step {steps} (λ={float(lam_of(t)):.6g}); "
                "the score is unstable there"
            )
        steps += 1
        if err <= 1.0:
            t, y, k1 = t + h, y_new, ks[6]
            if track:
                a_acc = a_new
            if record:
                lam_rec.append(float(lam_of(t)))
                xs_rec.append((y * float(schedule.alpha(lam_of(t)))).to(dtype))
                lp_rec.append(a_acc.clone() if track else None)
            fac = 10.0 if err == 0.0 else min(10.0, max(0.2, 0.9 * err**-0.2))
        else:
            fac = max(0.2, 0.9 * err**-0.2)
        h = h * fac
    if score is not None:
        score.where = ""
    x_end = (y * float(schedule.alpha(lam_of(t1)))).to(dtype)
    l0 = torch.tensor(lam0, dtype=f64)
    shift = (lambda lam: big_r(torch.tensor(lam, dtype=f64)) - big_r(l0)) if track else None
    out = acc + a_acc + shift(lam1) if track else None
    traj = None
    if record:
        logp = None
        if track:
            logp = torch.stack([acc + a + shift(lm) for a, lm in zip(lp_rec, lam_rec)])
        lam_t = torch.tensor(lam_rec, dtype=f64)
        traj = Trajectory(lam=lam_t, x=torch.stack(xs_rec), logp=logp)
    return x_end, out, traj


def _initial_step(f, y, t0, f0, direction, span, rtol, atol) -> float:
    """A first step size (Hairer, Nørsett & Wanner, Solving ODEs I, §II.4), one plain call."""
    scale = atol + rtol * y.abs()
    d0 = float((y / scale).square().mean().sqrt())
    d1 = float((f0 / scale).square().mean().sqrt())
    h0 = 0.01 * d0 / d1 if min(d0, d1) > 1e-5 else 1e-6 * span
    h0 = min(h0, span)
    f1 = f(y + direction * h0 * f0, t0 + direction * h0, False)[0]
    d2 = float(((f1 - f0) / scale).square().mean().sqrt()) / h0
    h1 = (0.01 / max(d1, d2)) ** 0.2 if max(d1, d2) > 1e-15 else max(1e-6, h0 * 1e-3)
    return min(100 * h0, h1, span)
