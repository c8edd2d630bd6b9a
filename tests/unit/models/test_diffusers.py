"""model=diffusers: a tiny random UNet2DModel + scheduler saved to a folder, loaded offline.

Checked against diffusers' own numbers: the scheduler's ᾱ_n (λ ↔ timestep map) and its
`step(...).pred_original_sample` (the x_0 implied by the adapter's score; ε, v and x_0 outputs).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from cartoonist import VE, VP, score_from_eps
from cartoonist.models.diffusers import DiffusersModel
from cartoonist.models.diffusers_adapters import DiscreteTimeMap
from cartoonist.pipeline import ConfigError
from tests.helpers.pretrained import save_tiny_diffusers

diffusers = pytest.importorskip("diffusers")

DT = torch.float64


def _lam_of(ac: torch.Tensor) -> torch.Tensor:
    ac = ac.to(DT)
    return torch.log(ac) - torch.log1p(-ac)


@pytest.fixture(scope="module")
def eps_folder(tmp_path_factory):
    return save_tiny_diffusers(tmp_path_factory.mktemp("ddpm_eps"))


@pytest.mark.parametrize(
    "kw",
    [
        dict(beta_schedule="linear"),
        dict(beta_schedule="squaredcos_cap_v2"),
        dict(beta_schedule="scaled_linear", num_train_timesteps=500),
    ],
    ids=lambda kw: kw["beta_schedule"],
)
def test_time_map_is_exact_at_the_schedulers_timesteps(kw):
    sched = diffusers.DDPMScheduler(**kw)
    ac = sched.alphas_cumprod
    tm = DiscreteTimeMap(ac)
    lam_n, n = _lam_of(ac), torch.arange(len(ac), dtype=DT)
    assert torch.equal(tm.timestep(lam_n), n)  # every trained step maps back exactly
    assert torch.equal(tm.lam(n), lam_n)
    vp = VP(tm.lambda_min, tm.lambda_max)  # the adapter's schedule: α² = sigmoid(λ) = ᾱ_n
    assert (tm.lambda_min, tm.lambda_max) == (float(lam_n[-1]), float(lam_n[0]))
    assert torch.allclose(vp.alpha(lam_n) ** 2, ac.to(DT), rtol=1e-12, atol=0)
    assert torch.allclose(vp.sigma(lam_n) ** 2, 1 - ac.to(DT), rtol=1e-9, atol=0)
    # In between: strictly decreasing, inside the bracketing steps, and inverted by lam().
    lam = torch.linspace(tm.lambda_min, tm.lambda_max, 20001, dtype=DT)
    t = tm.timestep(lam)
    assert (t[1:] < t[:-1]).all() and t[0] == len(ac) - 1 and t[-1] == 0
    k = t.floor().long().clamp(max=len(ac) - 2)
    assert ((lam <= lam_n[k] + 1e-12) & (lam >= lam_n[k + 1] - 1e-12)).all()
    assert torch.allclose(tm.lam(t), lam, atol=1e-12, rtol=0)


def test_zero_terminal_snr_step_is_dropped():
    ac = diffusers.DDPMScheduler(rescale_betas_zero_snr=True).alphas_cumprod
    tm = DiscreteTimeMap(ac)
    assert float(ac[-1]) == 0.0 and tm.num_steps == len(ac) - 1
    assert math.isfinite(tm.lambda_min) and tm.lambda_min == float(_lam_of(ac[:-1])[-1])


@pytest.mark.parametrize("pred", ["epsilon", "v_prediction", "sample"])
def test_score_implies_the_schedulers_x0_prediction(tmp_path, pred):
    """At integer timesteps: Tweedie x_0 = (x + σ² s)/α equals DDPMScheduler's own x_0."""
    folder = save_tiny_diffusers(tmp_path, prediction_type=pred)
    score = DiffusersModel(str(folder)).load()
    sched = diffusers.DDPMScheduler.from_pretrained(folder, clip_sample=False)
    unet = diffusers.UNet2DModel.from_pretrained(folder)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for n in (0, 17, 500, 999):
        lam = _lam_of(sched.alphas_cumprod[n]).expand(2)
        a, s2 = score.schedule.alpha(lam[0]), score.schedule.sigma(lam[0]) ** 2
        x0 = (x + float(s2) * score(x, lam)) / float(a)
        with torch.no_grad():
            out = unet(x, n).sample
        want = sched.step(out, n, x, generator=torch.Generator().manual_seed(0))
        ref = want.pred_original_sample
        tol = 1e-4 * (1 + float(ref.abs().max()))
        assert torch.allclose(x0, ref, atol=tol, rtol=1e-4), (n, (x0 - ref).abs().max())


def test_adapter_equals_core_eps_converter(eps_folder):
    """The adapter's score = score_from_eps(ε̂ of the same weights at the same timestep)."""
    score = DiffusersModel(str(eps_folder)).load()
    unet = diffusers.UNet2DModel.from_pretrained(eps_folder)
    tm = score.time

    def eps_net(x, lam):
        with torch.no_grad():
            return unet(x, tm.timestep(lam).float()).sample

    core = score_from_eps(eps_net, VP(tm.lambda_min, tm.lambda_max))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 8, 8, generator=g)
    lam = tm.lambda_min + (tm.lambda_max - tm.lambda_min) * torch.rand(4, generator=g, dtype=DT)
    assert torch.allclose(score(x, lam), core(x, lam), rtol=1e-4, atol=1e-5)  # attention kernels
    assert score.event_shape == (3, 8, 8)
    assert score.log_jacobian == pytest.approx(3 * 64 * math.log(2 / 256))


def test_nearest_and_interpolated_timesteps(eps_folder):
    """Between trained steps the interpolated score lies close to both neighbouring steps."""
    interp = DiffusersModel(str(eps_folder)).load()
    nearest = DiffusersModel(str(eps_folder), timestep="nearest").load()
    lam_n = interp.time.lambdas
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    for n in (3, 400, 900):
        mid = 0.5 * (lam_n[n] + lam_n[n + 1])
        assert nearest.network_time(mid.reshape(1)).item() in (n, n + 1)
        assert interp.network_time(mid.reshape(1)).item() == pytest.approx(n + 0.5)
        s_mid = interp.net_output(x, mid.expand(3))
        s_lo, s_hi = (
            interp.net_output(x, lam_n[n].expand(3)),
            interp.net_output(x, lam_n[n + 1].expand(3)),
        )
        step = (s_hi - s_lo).abs().max()
        assert (s_mid - s_lo).abs().max() <= step and (s_mid - s_hi).abs().max() <= step


def test_jvp_through_the_unet_matches_finite_differences(eps_folder):
    """Forward-mode AD (PF-ODE divergence) works through diffusers' attention and GroupNorm."""
    score = DiffusersModel(str(eps_folder)).load().double()
    g = torch.Generator().manual_seed(3)
    x, v = (
        torch.randn(2, 3, 8, 8, generator=g, dtype=DT),
        torch.randn(2, 3, 8, 8, generator=g, dtype=DT),
    )
    lam = torch.tensor([0.5, -2.0], dtype=DT)
    _, jv = torch.func.jvp(lambda z: score(z, lam), (x,), (v,))
    h = 1e-6
    fd = (score(x + h * v, lam) - score(x - h * v, lam)) / (2 * h)
    assert torch.allclose(jv, fd, rtol=1e-6, atol=1e-6 * float(fd.abs().max()))


def test_pipeline_layout_and_continuous_sigma_ve(tmp_path):
    """unet/ + scheduler/ subfolders; a score-SDE VE model (continuous σ, data in [0, 1])."""
    folder = save_tiny_diffusers(
        tmp_path / "ve", scheduler="ScoreSdeVeScheduler", pipeline_layout=True
    )
    score = DiffusersModel(str(folder)).load()
    # our x = 2y − 1, σ_x = 2σ_y: λ ∈ [−2 log(2·50), −2 log(2·0.01)]
    assert score.schedule == VE(-2 * math.log(100.0), -2 * math.log(0.02))
    unet = diffusers.UNet2DModel.from_pretrained(folder / "unet")
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1
    lam = torch.tensor([-6.0, 4.0], dtype=DT)
    sigma_y = (torch.exp(-0.5 * lam) / 2).float()
    with torch.no_grad():
        want = 0.5 * unet((x + 1) / 2, sigma_y).sample  # ∇_x log p = ½ ∇_y log p
    assert torch.allclose(score(x, lam), want, rtol=1e-4, atol=1e-5)  # math vs fused attention


def test_class_conditional_unet_takes_labels(tmp_path):
    folder = save_tiny_diffusers(tmp_path, num_class_embeds=3)
    with pytest.raises(ConfigError, match="class_labels"):
        DiffusersModel(str(folder)).check()
    x, lam = torch.randn(2, 3, 8, 8), torch.zeros(2)
    s0 = DiffusersModel(str(folder), class_labels=0).load()(x, lam)
    s2 = DiffusersModel(str(folder), class_labels=2).load()(x, lam)
    assert not torch.allclose(s0, s2)


def _truncate_weights(d):
    w = d / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])


def test_missing_or_corrupt_folders_fail_in_one_line_naming_the_path(eps_folder, tmp_path):
    import shutil

    def broken(name, edit):
        d = tmp_path / name
        shutil.copytree(eps_folder, d)
        edit(d)
        return d

    cases = {
        "missing": tmp_path / "no_such_folder",
        "no_config": broken("no_config", lambda d: (d / "config.json").unlink()),
        "bad_json": broken("bad_json", lambda d: (d / "config.json").write_text('{"_class_')),
        "no_sched": broken("no_sched", lambda d: (d / "scheduler_config.json").unlink()),
        "no_weights": broken(
            "no_weights", lambda d: (d / "diffusion_pytorch_model.safetensors").unlink()
        ),
        "truncated": broken("truncated", _truncate_weights),
        "cond_unet": broken(
            "cond_unet",
            lambda d: (d / "config.json").write_text(
                json.dumps({"_class_name": "UNet2DConditionModel"})
            ),
        ),
    }
    for name, folder in cases.items():
        with pytest.raises(ConfigError) as e:
            DiffusersModel(str(folder)).check()
        msg = str(e.value)
        assert str(folder) in msg and len(msg.splitlines()) == 1, (name, msg)

    def edit_config(d):
        cfg = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps(dict(cfg, block_out_channels=[8, 32])))

    wrong = broken("wrong_shapes", edit_config)
    DiffusersModel(str(wrong)).check()  # structurally fine: the mismatch shows when loading
    with pytest.raises(ConfigError) as e:
        DiffusersModel(str(wrong)).load()
    assert str(wrong) in str(e.value) and len(str(e.value).splitlines()) == 1
