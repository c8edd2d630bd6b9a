"""model=stable_diffusion: a tiny random SD folder (real layout), loaded offline.

Checked against diffusers' own numbers on the same weights (the scheduler's x_0 from ε or v), the
Lemma/PF-ODE identity at w = 1, batch invariance with per-sample prompts, and one-line errors.
"""

from __future__ import annotations

import functools
import shutil

import pytest
import torch

from cartoonist.diffusion import Keys, hd_sample, ode_log_prob, sample_ode
from cartoonist.errors import ConfigError
from cartoonist.lit import SampleJob
from cartoonist.models.diffusers import DiffusersModel
from cartoonist.models.stable_diffusion import COMPONENTS, StableDiffusionModel
from tests.helpers.latent import EMBED, MAX_LEN, save_tiny_sd

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")

DT = torch.float64


@pytest.fixture(scope="module")
def eps_folder(tmp_path_factory):
    return save_tiny_sd(tmp_path_factory.mktemp("sd_eps"))


@pytest.fixture(scope="module")
def v_folder(tmp_path_factory):
    return save_tiny_sd(tmp_path_factory.mktemp("sd_v"), prediction_type="v_prediction", latent=2)


def _text_embeds(folder, prompts):
    from transformers import CLIPTextModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    enc = CLIPTextModel.from_pretrained(str(folder / "text_encoder"))
    ids = tok(
        prompts, padding="max_length", max_length=MAX_LEN, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        return enc(ids)[0]


@pytest.mark.parametrize("pred", ["epsilon", "v_prediction"])
def test_score_implies_the_schedulers_x0_prediction(tmp_path, pred):
    """At trained timesteps, for each prompt and for guidance: Tweedie's z_0 = (z + σ² s)/α from
    our score equals DDIMScheduler.step's pred_original_sample of the UNet's own output."""
    folder = save_tiny_sd(tmp_path, prediction_type=pred)
    prompts = ["a cat", "a dog"]
    w = 3.0
    score = StableDiffusionModel(str(folder), prompt=prompts, guidance_scale=w).load()
    sched = diffusers.DDIMScheduler.from_pretrained(folder / "scheduler", clip_sample=False)
    sched.set_timesteps(10)
    unet = diffusers.UNet2DConditionModel.from_pretrained(folder / "unet")
    emb = _text_embeds(folder, prompts + [""])
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ac = sched.alphas_cumprod.to(DT)
    for n in (1, 301, 901):
        lam = (torch.log(ac[n]) - torch.log1p(-ac[n])).expand(2)
        a, s2 = float(score.schedule.alpha(lam[0])), float(score.schedule.sigma(lam[0]) ** 2)
        with torch.no_grad():
            out_c = unet(z, n, encoder_hidden_states=emb[:2]).sample
            out_u = unet(z, n, encoder_hidden_states=emb[2:].expand(2, -1, -1)).sample
        for out, fn in (
            (out_c, score.conditional_of([0, 1])),
            (out_u + w * (out_c - out_u), score.for_samples([0, 1])),  # the pipelines' CFG
            (out_u, score.unconditional_of([0, 1])),
        ):
            z0 = (z + s2 * fn(z, lam)) / a
            ref = sched.step(out, n, z).pred_original_sample
            tol = 1e-4 * (1 + float(ref.abs().max()))
            assert torch.allclose(z0, ref, atol=tol, rtol=1e-4), (n, (z0 - ref).abs().max())
    assert score.condition_of([0, 1, 2, 5]) == ["a cat", "a dog", "a cat", "a dog"]
    assert score.space == "latent" and score.log_jacobian == 0.0
    assert "latent z" in score.density_of and score.event_shape == (4, 8, 8)


def test_vae_codec_is_the_posterior_mean_and_decoder(eps_folder):
    score = StableDiffusionModel(str(eps_folder), prompt="a cat").load()
    vae = diffusers.AutoencoderKL.from_pretrained(eps_folder / "vae")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    c = vae.config.scaling_factor
    with torch.no_grad():
        z_ref = c * vae.encode(x).latent_dist.mean
        img_ref = vae.decode(z_ref / c).sample.clamp(-1, 1)
    z = score.encode(x)
    torch.testing.assert_close(z, z_ref)
    torch.testing.assert_close(score.decode(z), img_ref)
    assert score.image_shape == (3, 64, 64)


def test_tracked_log_p_at_w1_matches_pf_ode_encoding(v_folder):
    """w = 1, PF-ODE sampler (v-prediction, SD 2.x style): the tracked log p and the PF-ODE
    encoding of the same samples integrate the same flow's density, for any smooth field (random
    weights too); with one fixed Rademacher probe in both directions the trace estimate is the
    same function of (z, λ), so the two agree up to the integrators' error, which shrinks with the
    step (float64 weights, so rounding does not hide it)."""
    from cartoonist.diffusion import FixedProbes

    score = StableDiffusionModel(str(v_folder), prompt=["a cat", "a dog"]).load().double()
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


def test_batch_invariance_with_prompts(eps_folder):
    """A sample's latent, log p and prompt do not depend on the batch it is drawn in (also
    guided, where each sample also has its unconditional branch)."""
    for w in (1.0, 4.0):
        score = StableDiffusionModel(
            str(eps_folder), prompt=["a cat", "a dog", "a cow"], guidance_scale=w
        ).load()
        sampler = functools.partial(hd_sample, steps=4, lambda_threshold=0.0, track_logp=True)
        job = SampleJob(score, score.schedule, sampler, score.event_shape, seed=3)
        whole = job.predict_step((torch.arange(4),), 0)
        parts = [job.predict_step((torch.tensor(ids),), 0) for ids in ([2, 3], [0, 1])]
        for key in ("x", "logp_tracked", "images"):
            cat = torch.cat([parts[1][key], parts[0][key]])
            atol = 1.0 if key == "images" else 1e-4  # 8-bit rounding of ≈1e-6-equal pixels
            torch.testing.assert_close(cat.double(), whole[key].double(), rtol=1e-4, atol=atol)
        assert whole["images"].dtype == torch.uint8 and whole["images"].shape == (4, 3, 64, 64)


def test_prompt_file_and_precomputed_embeddings(eps_folder, tmp_path):
    from safetensors.torch import save_file

    f = tmp_path / "prompts.txt"
    f.write_text("a cat\n\na dog\n")
    by_file = StableDiffusionModel(str(eps_folder), prompt_file=str(f)).load()
    assert by_file.prompts == ["a cat", "a dog"]
    emb = _text_embeds(eps_folder, ["a cat", "a dog", ""])
    torch.testing.assert_close(by_file.prompt_embeds, emb[:2])
    torch.testing.assert_close(by_file.negative_embeds, emb[2:])
    st = tmp_path / "emb.safetensors"
    save_file({"prompt_embeds": emb[:2].contiguous(), "negative_prompt_embeds": emb[2]}, str(st))
    pre = StableDiffusionModel(str(eps_folder), prompt_embeds=str(st)).load()
    z = torch.randn(3, 4, 8, 8)
    lam = torch.zeros(3)
    torch.testing.assert_close(
        pre.for_samples([0, 1, 2])(z, lam), by_file.for_samples([0, 1, 2])(z, lam)
    )
    assert pre.condition_of([1]) == ["prompt_embeds[1]"]
    save_file(
        {"prompt_embeds": torch.zeros(1, MAX_LEN, EMBED + 1)}, str(tmp_path / "bad.safetensors")
    )
    with pytest.raises(ConfigError, match="cross_attention_dim"):
        StableDiffusionModel(
            str(eps_folder), prompt_embeds=str(tmp_path / "bad.safetensors")
        ).check()


def test_no_prompt_uses_the_empty_prompt_and_says_so(eps_folder, capsys):
    score = StableDiffusionModel(str(eps_folder)).load()
    assert score.prompts == [""] and "empty prompt" in capsys.readouterr().out


def test_one_line_errors(eps_folder, tmp_path):
    for part in COMPONENTS:
        d = tmp_path / f"no_{part}"
        shutil.copytree(eps_folder, d)
        shutil.rmtree(d / part)
        with pytest.raises(ConfigError) as e:
            StableDiffusionModel(str(d), prompt="a cat").check()
        msg = str(e.value)
        assert f"no {part}/ folder" in msg and str(d) in msg and len(msg.splitlines()) == 1
    bad = {
        "prompt": dict(prompt=3),
        "guidance_scale": dict(prompt="a", guidance_scale=-1.0),
        "one of": dict(prompt="a", prompt_file="x.txt"),
        "prompt_file": dict(prompt_file=str(tmp_path / "none.txt")),
        "prompt_embeds": dict(prompt_embeds=str(tmp_path / "none.safetensors")),
    }
    for key, kw in bad.items():
        with pytest.raises(ConfigError) as e:
            StableDiffusionModel(str(eps_folder), **kw).check()
        assert key in str(e.value) and len(str(e.value).splitlines()) == 1, str(e.value)
    with pytest.raises(ConfigError) as e:  # a prompt on an unconditional model
        DiffusersModel(str(eps_folder), prompt="a cat").check()
    assert "not text-conditional" in str(e.value) and len(str(e.value).splitlines()) == 1
    with pytest.raises(ConfigError, match="model=stable_diffusion"):  # the SD folder itself
        DiffusersModel(str(eps_folder)).check()
