"""Dispatch by type and the allow-list of `_target_`s: nothing outside cartoonist is built."""

import pytest
import torch

from cartoonist.errors import ConfigError
from cartoonist.models.checkpoint import load_denoiser
from cartoonist.pipeline import preflight
from cartoonist.pipeline.targets import likelihood_kind, model_kind
from tests.helpers.pipeline import compose_cfg


@pytest.mark.parametrize(
    "override, key",
    [
        ("model._target_=builtins.open", "model._target_"),
        ("sampler._target_=os.system", "sampler._target_"),
        ("+dataset.source.x._target_=builtins.exec", "dataset.source.x._target_"),
    ],
)
def test_a_target_outside_cartoonist_is_refused_before_anything_runs(
    override, key, tmp_path, capsys
):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    with pytest.raises(SystemExit) as e:
        preflight("sample", [override, f"paths.output_root={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and key in err[0]
    assert victim.read_text() == "keep me"


def test_a_checkpoint_naming_another_callable_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    spec = {
        "net": {"_target_": "builtins.open", "file": str(victim), "mode": "w"},
        "noise": {"_target_": "cartoonist.diffusion.losses.TrainingNoise"},
        "event_shape": [2],
        "log_jacobian": 0.0,
    }
    torch.save({"cartoonist": spec, "state_dict": {}}, tmp_path / "evil.ckpt")
    with pytest.raises(ConfigError, match="checkpoint names network 'builtins.open'"):
        load_denoiser(tmp_path / "evil.ckpt")
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize(
    "model, kind",
    [
        ("oracle", "oracle"),
        ("mlp", "network"),
        ("unet", "network"),
        ("diffusers", "pretrained"),
        ("edm", "pretrained"),
    ],
)
def test_model_kind_follows_the_class_not_its_name(model, kind, tmp_path):
    cfg = compose_cfg("sample", [f"model={model}"], tmp_path)
    assert model_kind(cfg) == kind


def test_likelihood_kind(tmp_path):
    kinds = {
        lik: likelihood_kind(compose_cfg("evaluate", [f"likelihood={lik}"], tmp_path))
        for lik in ("exact", "sde_tracking", "pf_ode", "elbo")
    }
    assert kinds == {
        "exact": "exact",
        "sde_tracking": "sde_tracking",
        "pf_ode": "estimator",
        "elbo": "estimator",
    }
