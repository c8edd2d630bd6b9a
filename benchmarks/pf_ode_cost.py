"""Q4 — PF-ODE likelihood cost at equal error: cartoonist vs k-diffusion's `log_likelihood`.

The standard approach (k-diffusion's `sampling.log_likelihood`, score_sde's likelihood)
integrates the PF-ODE in σ with adaptive dopri5 and one reverse-mode (VJP) Rademacher probe held
fixed over the solve. cartoonist integrates in log-SNR λ on a fixed grid (RK4 or Heun) with a
VJP (or JVP) probe, on a uniform λ grid or on EDM's ρ = 7 grid (`rho_grid`: uniform in σ^{1/7},
the schedule-shaped grid), or with method="adaptive" (`cartoonist.diffusion.adams`: its own
exponential Adams PECE in λ, one plain evaluation and one VJP a step, with a Gaussian control
variate for the log-density and the log p error held in absolute nats; tolerances swept); the
table reports the fastest of these at
each error. Times are process CPU time (one thread), the median of repeated runs timed in
interleaved rounds (every contender and setting once a round, odd rounds reversed).

Both estimate the same quantity with the *same* probe v, so their errors are measured against one
reference: the same-probe integral solved by dopri5 in λ to rtol = atol = 1e-9 (oracle, float64)
or 1e-6 (U-Net, float32), cross-checked against k-diffusion at 10× that tolerance. Wall time vs
mean |error| is swept for both (tolerances for k-diffusion, steps for cartoonist); our wall time
at k-diffusion's error is interpolated (log–log) on our curve.
Goal: speedup_at_equal_error = time(k-diffusion) / time(cartoonist) ≥ 2 at the tightest
tolerance measured (1e-5 on the oracle; 1e-4, k-diffusion's default, on the U-Net, whose float32
reference is good to ~4e-3 nats); every tolerance's speedup is saved. --quick runs the oracle on
16 samples and, when a trained digits checkpoint exists, the U-Net on k-diffusion's two tightest
tolerances against RK4 and the adaptive solver at 0.3 and 0.1 (the full sweep takes ~10 minutes).

k-diffusion 0.1.1.post1 runs as published: its `sampling` module is imported from the installed
package with a stub for `torchvision` (imported by `k_diffusion.utils` for image conversions that
`log_likelihood` never calls). If it is not installed (`make bench` installs it with --no-deps),
the script stops and says so rather than benchmarking a re-implementation.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
import types
from pathlib import Path

import torch

from benchmarks.common import ROOT, cpu_clock, parse, save, sync, table
from cartoonist.diffusion import EDM, ode_log_prob, score_from_eps
from cartoonist.diffusion.divergence import FixedProbes


def import_k_diffusion_sampling():
    """k_diffusion.sampling from the installed wheel, without its package __init__."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None:
        sys.exit(
            "k-diffusion is not installed: pip install --no-deps k-diffusion==0.1.1.post1 "
            "torchsde==0.2.6 trampoline (make bench does this)"
        )
    for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
        sys.modules.setdefault(name, types.ModuleType(name))
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["k_diffusion"] = pkg
    from k_diffusion import sampling

    return sampling


def kd_denoiser_from_score(score, x_scale: float = 1.0):
    """A k-diffusion denoiser D(x, σ) for a VE-space score: D = x + σ² s(x, λ = −2 log σ)."""

    def model(x, sigma):
        lam = -2 * torch.log(sigma)
        s = score(x, lam)
        return x + sigma.view(-1, *[1] * (x.ndim - 1)) ** 2 * s

    return model


def vp_net_as_ve_denoiser(net, sch):
    """k-diffusion's view of our VP ε-network: x_ve = x_vp / α, D = x̂_0 (Karras et al. 2022)."""

    def model(x, sigma):
        lam = -2 * torch.log(sigma)
        b = (-1, *[1] * (x.ndim - 1))
        a, s = sch.alpha(lam).view(b).to(x), sch.sigma(lam).view(b).to(x)
        xv = a * x
        eps = net(xv, lam.to(x))
        return (xv - s * eps) / a

    return model


def oracle_setup(quick: bool, device="cpu"):
    """The demo's exact model: a mixture of PPCA fitted to digits, under VE σ ∈ [0.002, 80]."""
    from cartoonist.data import Digits
    from cartoonist.oracles import fit_mppca

    sch = EDM.from_sigmas(0.002, 80.0)
    data = Digits().load().double()
    gmm = fit_mppca(data[:1500], 8, 4, iters=20, seed=0, schedule=sch).to(device)
    x = data[1500 : 1500 + (16 if quick else 32)].to(device)
    return {
        "name": "digits PPCA oracle (D=64, exact score)",
        "score": gmm.score,
        "schedule": sch,
        "x": x,
        "kd_model": kd_denoiser_from_score(gmm.score),
        "kd_x": x,
        "kd_offset": 0.0,
        "exact": gmm.log_prob(x, sch.lambda_max),
    }


def digits_setup(quick: bool, device="cpu"):
    """The trained digits U-Net (VP, ε-prediction) if a checkpoint exists."""
    from cartoonist.data import Digits
    from cartoonist.models.checkpoint import load_denoiser

    for p in ("outputs/train/fig4_digits_elbo", "outputs/train/digits_unet_elbo"):
        ck = ROOT / p / "checkpoints" / "last.ckpt"
        if ck.exists():
            break
    else:
        return None
    net, noise, _ = load_denoiser(ck)
    net = net.to(device)
    sch = noise.schedule
    x = Digits().load()[-8:].to(device)
    a_max = float(sch.alpha(sch.lambda_max))
    return {
        "name": f"trained digits U-Net ({Path(p).name}, D=64)",
        "score": score_from_eps(net, sch),
        "schedule": sch,
        "x": x,
        "kd_model": vp_net_as_ve_denoiser(net, sch),
        "kd_x": x / a_max,
        # log p_ve(x/α) = log p_vp(x) + D log α at λ_max.
        "kd_offset": x[0].numel() * math.log(a_max),
        "exact": None,
        "kd_tols": [1e-2, 1e-3, 1e-4],
    }


def rho_grid(lambda_min: float, lambda_max: float, steps: int, rho: float = 7.0):
    """EDM's ρ-spaced grid (Karras et al. 2022, eq. 5) in λ, decreasing (data → noise).

    σ_i = e^{−λ_i/2} uniform in σ^{1/ρ}: fine steps near the data, coarse ones at high noise.
    For any schedule (its λ range); the same points as `EDM.rho_grid` on an EDM schedule.
    """
    i = torch.arange(steps + 1, dtype=torch.float64) / steps
    a, b = math.exp(-lambda_min / (2 * rho)), math.exp(-lambda_max / (2 * rho))
    lam = -2 * rho * torch.log(a + i * (b - a))
    lam[0], lam[-1] = lambda_min, lambda_max
    return lam.flip(0)


def probe_like(x, seed: int):
    """k-diffusion's probe: torch.randint_like(x, 2) * 2 − 1 under the global seed."""
    torch.manual_seed(seed)
    return torch.randint_like(x, 2) * 2 - 1


CLOCK = [time.process_time]


def timed(fn):
    """(result, seconds) of one call.

    Process CPU time on the CPU (one intra-op thread), the synchronised wall clock on a GPU.
    """
    sync()
    t = CLOCK[0]()
    out = fn()
    sync()
    return out, CLOCK[0]() - t


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


ADAPTIVE = "adaptive (Adams, CV)"


def run_case(kd, case, quick: bool, seed: int = 0, ref_tol: float = 1e-9) -> dict:
    """Sweep both methods on one model and interpolate the speedup at equal error."""
    sch, x = case["schedule"], case["x"]
    sig_min, sig_max = math.exp(-0.5 * sch.lambda_max), math.exp(-0.5 * sch.lambda_min)
    v = probe_like(case["kd_x"], seed)

    def ours(steps, method="heun", backend="reverse", rtol=1e-5, grid="uniform"):
        lam = rho_grid(sch.lambda_min, sch.lambda_max, steps) if grid == "rho" else None
        return ode_log_prob(
            case["score"],
            sch,
            x,
            steps,
            grid=lam,
            method=method,
            backend=backend,
            rtol=rtol,
            atol=rtol,
            noise=FixedProbes.from_tensors([v]),
        )

    def adaptive(tol):
        return ode_log_prob(
            case["score"],
            sch,
            x,
            1,
            method="adaptive",
            backend="reverse",
            rtol=tol,
            atol=tol,
            noise=FixedProbes.from_tensors([v]),
        )

    def theirs(tol):
        torch.manual_seed(seed)  # the same probe v inside log_likelihood
        ll, info = kd.log_likelihood(
            case["kd_model"], case["kd_x"], sig_min, sig_max, atol=tol, rtol=tol
        )
        return ll - case["kd_offset"], info["fevals"]

    ref = ours(1, method="dopri5", rtol=ref_tol).logp
    kd_ref, _ = theirs(10 * ref_tol)
    cross = float((kd_ref - ref).abs().max())
    kd_tols = case.get("kd_tols", [1e-2, 1e-3, 1e-4, 1e-5])
    steps = [8, 16, 32, 48] if quick else [8, 16, 32, 64]
    methods = {
        "rk4/vjp": ("rk4", "reverse", "uniform", steps),
        "rk4/vjp rho7": ("rk4", "reverse", "rho", steps),
        "heun/vjp": ("heun", "reverse", "uniform", [16, 32, 64] if quick else [16, 32, 64, 128]),
    }
    if not quick:
        methods["heun/jvp"] = ("heun", "forward", "uniform", [16, 64])
    repeat = 5
    our_tols = [1.0, 3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4]
    our_tols += [] if quick else [3e-5, 1e-5]
    if case["exact"] is None:
        # The float32 U-Net: its reference is good to ~4e-3 nats, and the adaptive solver is
        # not its fastest (it takes ~0.06-λ steps throughout: the network is rough in λ).
        our_tols = our_tols[:5]
        if quick:  # bench-quick: the settings that bracket k-diffusion's two tightest errors
            kd_tols, our_tols, repeat = kd_tols[-2:], our_tols[1:3], 3
            methods = {"rk4/vjp": ("rk4", "reverse", "uniform", [16, 32, 64])}
    # Every contender and setting is one job; the jobs are timed in interleaved rounds (odd rounds
    # reversed), so load that drifts over the run falls on all of them alike.
    jobs = {("k-diffusion", tol): (lambda tol=tol: theirs(tol)) for tol in kd_tols}
    for m, (method, backend, grid, step_list) in methods.items():
        for steps in step_list:
            jobs[(m, steps)] = lambda a=(steps, method, backend), g=grid: ours(*a, grid=g)
    for tol in our_tols:
        jobs[(ADAPTIVE, tol)] = lambda tol=tol: adaptive(tol)
    for fn in jobs.values():  # warm-up; first calls build the autograd machinery
        fn()
    walls = {k: [] for k in jobs}
    results = {}
    for r in range(repeat):
        for k in list(jobs)[:: -1 if r % 2 else 1]:
            results[k], w = timed(jobs[k])
            walls[k].append(w)
    kd_pts, our_pts = [], {m: [] for m in [*methods, ADAPTIVE]}
    for (who, setting), res in results.items():
        wall = _median(walls[(who, setting)])
        if who == "k-diffusion":
            ll, nfe = res
            pt = dict(tol=setting, nfe=nfe, wall_s=wall, err=float((ll - ref).abs().mean()))
            kd_pts.append(pt)
            continue
        pt = dict(nfe=res.nfe, wall_s=wall, err=float((res.logp - ref).abs().mean()))
        pt.update(steps=None, tol=setting) if who == ADAPTIVE else pt.update(steps=setting)
        our_pts[who].append(pt)
    for p in kd_pts:
        walls = {m: interp_wall(pts, p["err"]) for m, pts in our_pts.items()}
        walls = {m: w for m, w in walls.items() if w is not None}
        best = min(walls, key=walls.get) if walls else None
        p["ours_best_method"] = best
        p["ours_wall_s"] = walls[best] if best else None
        p["speedup"] = p["wall_s"] / walls[best] if best else None
    default = next(p for p in kd_pts if p["tol"] == 1e-4)
    tightest = min(kd_pts, key=lambda p: p["tol"])
    per_nfe = {"k_diffusion": _median([p["wall_s"] / p["nfe"] for p in kd_pts])}
    per_nfe.update(
        {m: _median([p["wall_s"] / p["nfe"] for p in pts]) for m, pts in our_pts.items()}
    )
    out = {
        "model": case["name"],
        "batch": x.shape[0],
        "reference_cross_check_max_abs": cross,
        "k_diffusion": kd_pts,
        "cartoonist": our_pts,
        "speedup_at_equal_error": tightest["speedup"],
        "tightest_tol": tightest["tol"],
        "speedup_at_default_tol_1e-4": default["speedup"],
        "speedup_at_equal_error_all_tols": {str(p["tol"]): p["speedup"] for p in kd_pts},
        "wall_per_nfe_ms": {k: 1e3 * v for k, v in per_nfe.items()},
    }
    if case["exact"] is not None:
        out["same_probe_reference_vs_exact_mean_abs"] = float((ref - case["exact"]).abs().mean())
    return out


def interp_wall(pts: list[dict], err: float):
    """Our wall time at error `err`, log–log interpolated between the bracketing step counts."""
    pts = sorted(pts, key=lambda p: p["err"])
    if not pts or err < pts[0]["err"]:
        return None  # finer than our finest run
    if err >= pts[-1]["err"]:
        return pts[-1]["wall_s"]  # our cheapest run is already this accurate
    for lo, hi in zip(pts, pts[1:]):
        if lo["err"] <= err <= hi["err"]:
            if hi["err"] == lo["err"]:
                return lo["wall_s"]
            w = math.log(err / lo["err"]) / math.log(hi["err"] / lo["err"])
            return math.exp((1 - w) * math.log(lo["wall_s"]) + w * math.log(hi["wall_s"]))
    return None


def main():
    """Run the benchmark and write its JSON."""
    args = parse(__doc__.splitlines()[0])
    kd = import_k_diffusion_sampling()
    CLOCK[0], clock_name = cpu_clock(args.device)
    print(f"[bench] clock: {clock_name}, device {args.device}")
    cases = [oracle_setup(args.quick, args.device)]
    if (d := digits_setup(args.quick, args.device)) is not None:
        cases.append(d)
    else:
        print("[bench] no trained digits checkpoint under outputs/train: oracle only")
    results, rows = [], []
    for case in cases:
        r = run_case(kd, case, args.quick, ref_tol=1e-9 if case["exact"] is not None else 1e-6)
        results.append(r)
        for p in r["k_diffusion"]:
            rows.append(
                dict(
                    model=r["model"][:30],
                    kd_tol=p["tol"],
                    kd_nfe=p["nfe"],
                    err=p["err"],
                    kd_wall_s=p["wall_s"],
                    ours_wall_s=p["ours_wall_s"],
                    ours_method=p["ours_best_method"],
                    speedup=p["speedup"],
                )
            )
        for m, pts in r["cartoonist"].items():
            for p in pts:
                what = f"{p['steps']:4d} steps" if p["steps"] else f"tol {p['tol']:g}"
                print(
                    f"  ours {m:9s} {what}  nfe {p['nfe']:4d}  "
                    f"err {p['err']:.3g}  wall {p['wall_s']:.3g} s"
                )
        print(
            f"  wall per NFE (ms): { {k: round(v, 2) for k, v in r['wall_per_nfe_ms'].items()} }"
        )
        print(
            f"  reference cross-check |kd − ours| (same probe, tight tolerances) max = "
            f"{r['reference_cross_check_max_abs']:.2g} nats"
        )
    table(
        rows,
        ["model", "kd_tol", "kd_nfe", "err", "kd_wall_s", "ours_wall_s", "ours_method", "speedup"],
        "Q4 PF-ODE log-likelihood: wall at k-diffusion's mean |error| (nats); goal speedup ≥ 2",
    )
    speed = {r["model"]: r["speedup_at_equal_error"] for r in results}
    met = all(v is not None and v >= 2.0 for v in speed.values())
    save(
        "pf_ode_cost",
        {"goal": 2.0, "speedup_at_equal_error": speed, "met": met, "cases": results},
        args,
    )


if __name__ == "__main__":
    main()
