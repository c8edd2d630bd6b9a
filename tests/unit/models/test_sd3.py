"""model=sd3: a tiny random SD3-style folder (transformer/, vae/, scheduler/), loaded offline.

Checked against diffusers' own numbers on the same weights (one FlowMatchEulerDiscreteScheduler
step vs our PF-ODE Euler step in t; the scheduler's x̂_0 = z − t û), the Flow schedule's λ ↔ t map
and trained range, the VAE codec with shift_factor, the Lemma/PF-ODE identity at w = 1, batch
invariance with per-sample embeddings, and one-line errors.
"""

from __future__ import annotations

import functools
import shutil

import pytest
import torch
from safetensors.torch import save_file

from cartoonist.diffusion import Keys, hd_sample, ode_log_prob, sample_ode
from cartoonist.diffusion.schedules import Flow
from cartoonist.errors import ConfigError
from cartoonist.lit import SampleJob
from cartoonist.models.sd3 import COMPONENTS, Sd3Model, flow_lambda_range
from tests.helpers.latent import SD3_JOINT, SD3_LEN, SD3_POOLED, save_sd3_embeds, save_tiny_sd3

diffusers = pytest.importorskip("diffusers")

DT = torch.float64


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_sd3(tmp_path_factory.mktemp("sd3"))


@pytest.fixture(scope="module")
def embeds(tmp_path_factory):
    return save_sd3_embeds(tmp_path_factory.mktemp("emb") / "emb.safetensors", n=3)


def test_flow_schedule_lambda_t_map():
    """α = 1 − t, σ = t, α²/σ² = e^λ at λ = 2 log((1 − t)/t), and t_of_lambda inverts it."""
    sch = Flow()
    t = torch.linspace(1e-3, 1 - 1e-3, 101, dtype=DT)
    lam = sch.lambda_of_t(t)
    torch.testing.assert_close(sch.t_of_lambda(lam), t)
    torch.testing.assert_close(sch.alpha(lam), 1 - t)
    torch.testing.assert_close(sch.sigma(lam), t)
    torch.testing.assert_close(sch.alpha(lam) ** 2 / sch.sigma(lam) ** 2, torch.exp(lam))


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_trained_lambda_range_is_the_schedulers_shifted_grid(shift):
    sched = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    lam = Flow().lambda_of_t(sched.sigmas.to(DT))
    lo, hi = flow_lambda_range(1000, shift)
    assert sched.sigmas[0] == 1.0  # λ = −∞: not a finite end
    for ours, k in ((lo, 1), (hi, -1)):  # the scheduler's sigmas are float32: |dλ/dt| · ulp(t)
        t = float(sched.sigmas[k])
        tol = 2 / (t * (1 - t)) * 2 * torch.finfo(torch.float32).eps
        assert ours == pytest.approx(float(lam[k]), abs=tol), (k, ours, float(lam[k]))


def test_score_matches_the_schedulers_euler_step_and_x0(folder, embeds):
    """At the scheduler's own (shifted) sigmas, for each condition and guided: our network time is
    the scheduler's timestep; the scheduler's step z + (t_{k+1} − t_k) û equals the Euler step in t
    of our PF-ODE, dz/dt = (f̃ z + ½ σ² s) dλ/dt (dλ/dt by autograd of λ(t)); Tweedie's ẑ_0 from
    our score equals z − t û."""
    from safetensors.torch import load_file

    w = 3.0
    score = Sd3Model(str(folder), prompt_embeds=str(embeds), guidance_scale=w).load()
    sch = score.schedule
    net = diffusers.SD3Transformer2DModel.from_pretrained(folder / "transformer")
    sched = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folder / "scheduler")
    e = load_file(str(embeds))
    emb, pool = e["prompt_embeds"][:2], e["pooled_prompt_embeds"][:2]
    nemb = e["negative_prompt_embeds"].expand(2, -1, -1)
    npool = e["negative_pooled_prompt_embeds"].expand(2, -1)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    sched.set_timesteps(10)
    sigmas, steps = sched.sigmas.clone(), sched.timesteps.clone()
    for k in (1, 4, 8):
        t, t_next = sigmas[k].to(DT), sigmas[k + 1].to(DT)
        tk = t.clone().requires_grad_(True)
        (dlam_dt,) = torch.autograd.grad(sch.lambda_of_t(tk), tk)
        lam = sch.lambda_of_t(t).expand(2)
        torch.testing.assert_close(
            score.network_time(lam).float(), steps[k].expand(2), rtol=1e-5, atol=1e-3
        )
        with torch.no_grad():
            u_c = net(z, emb, pool, steps[k].expand(2)).sample
            u_u = net(z, nemb, npool, steps[k].expand(2)).sample
        for u, fn in (
            (u_c, score.conditional_of([0, 1])),
            (u_u + w * (u_c - u_u), score.for_samples([0, 1])),  # the pipeline's CFG
            (u_u, score.unconditional_of([0, 1])),
        ):
            s = fn(z, lam).to(DT)
            drift = sch.f_tilde(lam[0]) * z.to(DT) + 0.5 * sch.sigma(lam[0]) ** 2 * s
            ours = z.to(DT) + (t_next - t) * drift * dlam_dt
            sched.set_timesteps(10)
            ref = sched.step(u, steps[k], z).prev_sample.to(DT)
            tol = 1e-4 * (1 + float(ref.abs().max()))
            assert torch.allclose(ours, ref, atol=tol, rtol=1e-4), (k, (ours - ref).abs().max())
            z0 = (z.to(DT) + sch.sigma(lam[0]) ** 2 * s) / sch.alpha(lam[0])
            z0_ref = z.to(DT) - t * u.to(DT)
            assert torch.allclose(z0, z0_ref, atol=tol, rtol=1e-4), (k, (z0 - z0_ref).abs().max())
    assert score.condition_of([0, 1, 2, 4]) == [
        "prompt_embeds[0]",
        "prompt_embeds[1]",
        "prompt_embeds[2]",
        "prompt_embeds[1]",
    ]
    assert score.space == "latent" and score.log_jacobian == 0.0
    assert "latent z" in score.density_of and score.event_shape == (4, 8, 8)


def test_vae_codec_applies_scaling_and_shift_factor(folder, embeds):
    score = Sd3Model(str(folder), prompt_embeds=str(embeds)).load()
    vae = diffusers.AutoencoderKL.from_pretrained(folder / "vae")
    c, b = vae.config.scaling_factor, vae.config.shift_factor
    assert b != 0.0
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        z_ref = (vae.encode(x).latent_dist.mean - b) * c
        img_ref = vae.decode(z_ref / c + b).sample.clamp(-1, 1)
    z = score.encode(x)
    torch.testing.assert_close(z, z_ref)
    torch.testing.assert_close(score.decode(z), img_ref)
    assert score.image_shape == (3, 64, 64)


def test_tracked_log_p_at_w1_matches_pf_ode_encoding(tmp_path, embeds):
    """w = 1, PF-ODE sampler: the tracked log p and the PF-ODE encoding of the same samples
    integrate the same flow's density (one fixed Rademacher probe both ways), agreeing up to the
    integrators' error, which shrinks with the step (float64 weights)."""
    from cartoonist.diffusion import FixedProbes

    small = save_tiny_sd3(tmp_path / "sd3", latent=4)
    score = Sd3Model(str(small), prompt_embeds=str(embeds)).load().double()
    sch = score.schedule
    fn = score.conditional_of([0, 1])
    z = sch.sample_prior((2, *score.event_shape), noise=Keys(0, [0, 1]), dtype=DT)
    g = torch.Generator().manual_seed(0)
    v = (torch.randint(0, 2, z.shape, generator=g) * 2 - 1).to(DT)
    gaps = []
    for steps in (4, 8):
        fwd = sample_ode(
            fn, sch, z, steps, method="heun", track_logp=True, noise=FixedProbes.from_tensors([v])
        )
        back = ode_log_prob(
            fn, sch, fwd.x, steps, method="heun", noise=FixedProbes.from_tensors([v])
        )
        gaps.append(float((fwd.logp - back.logp).abs().max()))
    scale = float(fwd.logp.abs().max())
    assert gaps[1] < 1e-2 * scale and gaps[0] / gaps[1] > 2.0, (gaps, scale)


def test_batch_invariance_with_embeddings(folder, embeds):
    """A sample's latent, log p and condition do not depend on its batch (also guided)."""
    for w in (1.0, 4.0):
        score = Sd3Model(str(folder), prompt_embeds=str(embeds), guidance_scale=w).load()
        sampler = functools.partial(hd_sample, steps=4, lambda_threshold=0.0, track_logp=True)
        job = SampleJob(score, score.schedule, sampler, score.event_shape, seed=3)
        whole = job.predict_step((torch.arange(4),), 0)
        parts = [job.predict_step((torch.tensor(ids),), 0) for ids in ([2, 3], [0, 1])]
        for key in ("x", "logp_tracked", "images"):
            cat = torch.cat([parts[1][key], parts[0][key]])
            atol = 1.0 if key == "images" else 1e-4  # 8-bit rounding of ≈1e-6-equal pixels
            torch.testing.assert_close(cat.double(), whole[key].double(), rtol=1e-4, atol=atol)
        assert whole["images"].dtype == torch.uint8 and whole["images"].shape == (4, 3, 64, 64)


def test_one_line_errors(folder, embeds, tmp_path):
    for part in COMPONENTS:
        d = tmp_path / f"no_{part}"
        shutil.copytree(folder, d)
        shutil.rmtree(d / part)
        with pytest.raises(ConfigError) as e:
            Sd3Model(str(d), prompt_embeds=str(embeds)).check()
        msg = str(e.value)
        assert f"no {part}/ folder" in msg and str(d) in msg and len(msg.splitlines()) == 1
    no_pool = tmp_path / "no_pool.safetensors"
    save_file({"prompt_embeds": torch.zeros(1, SD3_LEN, SD3_JOINT)}, str(no_pool))
    wide = tmp_path / "wide.safetensors"
    save_file(
        {
            "prompt_embeds": torch.zeros(1, SD3_LEN, SD3_JOINT + 1),
            "pooled_prompt_embeds": torch.zeros(1, SD3_POOLED),
        },
        str(wide),
    )
    no_neg = save_sd3_embeds(tmp_path / "no_neg.safetensors", negative=False)
    bad = {
        "needs model.prompt_embeds": dict(),
        "does not encode text": dict(prompt="a cat", prompt_embeds=str(embeds)),
        "pooled_prompt_embeds": dict(prompt_embeds=str(no_pool)),
        "joint_attention_dim": dict(prompt_embeds=str(wide)),
        "negative_prompt_embeds": dict(prompt_embeds=str(no_neg), guidance_scale=2.0),
        "guidance_scale": dict(prompt_embeds=str(embeds), guidance_scale=-1.0),
        "must be an existing": dict(prompt_embeds=str(tmp_path / "none.safetensors")),
    }
    for key, kw in bad.items():
        with pytest.raises(ConfigError) as e:
            Sd3Model(str(folder), **kw).check()
        assert key in str(e.value) and len(str(e.value).splitlines()) == 1, str(e.value)
    Sd3Model(str(folder), prompt_embeds=str(no_neg)).check()  # w = 1 needs no negatives
    sd = tmp_path / "ddim"
    shutil.copytree(folder, sd)
    diffusers.DDIMScheduler().save_pretrained(sd / "scheduler")
    with pytest.raises(ConfigError, match="FlowMatchEulerDiscreteScheduler"):
        Sd3Model(str(sd), prompt_embeds=str(embeds)).check()
