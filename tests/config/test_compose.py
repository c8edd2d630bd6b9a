"""Every option of every config group composes and instantiates; every experiment composes."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from cartoonist.errors import ConfigError
from cartoonist.pipeline import CONF_DIR, validate
from tests.helpers.pipeline import compose_cfg, spec_checkpoint

GROUPS = ["dataset", "model", "noise", "sampler", "likelihood", "trainer", "logger", "callbacks"]
TASK_OF = {"sampler": "sample", "likelihood": "evaluate", "callbacks": "train"}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


CASES = [(g, o) for g in GROUPS for o in _options(g)]
EDM = [
    "model=edm",
    "model.path=tests.helpers.pretrained:GaussianDenoiser",
    "model.event_shape=[1,4,4]",
]


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_instantiates(group, option, tmp_path):
    task = TASK_OF.get(group, "sample")
    overrides = [f"{group}={option}"]
    if group == "dataset" and option in ("image_folder", "mnist", "cifar10"):
        overrides.append(f"dataset.source.path={tmp_path}")
    if group == "likelihood" and option == "sde_tracking":
        overrides.append("source=samples")
    if (group, option) in (("model", "edm"), ("dataset", "none")):
        overrides += EDM  # dataset=none: a pretrained model brings the shape
    elif group == "model" and option == "network":
        overrides += [
            "model.path=tests.helpers.pretrained:TinyEpsNet",
            "model.event_shape=[1,4,4]",
        ]
    elif group == "model" and option == "diffusers":
        pytest.importorskip("diffusers")
        from tests.helpers.pretrained import save_tiny_diffusers

        overrides.append(f"model.path={save_tiny_diffusers(tmp_path / 'ddpm')}")
    elif group == "model" and option == "stable_diffusion":
        pytest.importorskip("transformers")
        from tests.helpers.latent import save_tiny_sd

        overrides += [f"model.path={save_tiny_sd(tmp_path / 'sd', latent=2)}", "model.prompt=a"]
    elif group == "model" and option == "sd3":
        pytest.importorskip("diffusers")
        from tests.helpers.latent import save_sd3_embeds, save_tiny_sd3

        emb = save_sd3_embeds(tmp_path / "emb.safetensors")
        overrides += [
            f"model.path={save_tiny_sd3(tmp_path / 'sd3')}",
            f"model.prompt_embeds={emb}",
        ]
    elif group == "model" and option != "oracle":
        target = f"cartoonist.models.{option.upper() if option == 'mlp' else 'UNet'}"
        overrides.append(f"ckpt_path={spec_checkpoint(tmp_path / 'c.ckpt', target)}")
    cfg = compose_cfg(task, overrides, tmp_path / "run")
    node = cfg[group]
    if group in ("logger", "callbacks"):
        objs = [instantiate(v) for v in node.values()]
        assert objs
    elif group == "trainer" and option == "gpu" and not torch.cuda.is_available():
        assert node.accelerator == "gpu"  # composes; instantiating needs a GPU
    elif group == "model" and option in ("diffusers", "edm", "network", "stable_diffusion", "sd3"):
        score = instantiate(node).load()  # a pretrained model: loads offline, gives a score
        x = torch.zeros(2, *score.event_shape)
        assert score(x, torch.zeros(2)).shape == x.shape and cfg.dataset._target_.endswith(
            "NoData"
        )
    elif group == "model" and option != "oracle":
        net = instantiate(node)(event_shape=(1, 8, 8))
        assert sum(p.numel() for p in net.parameters()) > 0
    else:
        assert instantiate(node) is not None
    if group == "dataset" and option in ("image_folder", "mnist", "cifar10"):
        with pytest.raises(ConfigError, match="dataset.source.path"):  # an empty folder
            validate(cfg, task)
        return
    validate(cfg, task)


@pytest.mark.parametrize("task", ["train", "sample", "evaluate"])
def test_primary_configs_and_smoke_debug_compose(task, tmp_path):
    for overrides in ([], ["debug=smoke"]):
        cfg = compose_cfg(task, overrides, tmp_path / "run")
        assert cfg.seed == 0 and cfg.task_name == task
        if task != "train" or "model" in cfg:
            validate(cfg, task)


@pytest.mark.parametrize(
    "path", sorted((CONF_DIR / "experiment").glob("*.yaml")), ids=lambda p: p.stem
)
def test_experiments_compose(path, tmp_path):
    text = path.read_text()
    task = (
        "figure"
        if "figure_name:" in text
        else "train"
        if "cartoonist.train" in text
        else "evaluate"
        if "cartoonist.evaluate" in text
        else "sample"
    )
    cfg = compose_cfg(task, [f"experiment={path.stem}"], tmp_path / "run")
    if cfg.get("ckpt_path"):  # a figure's trained model: any existing file passes validation
        Path(cfg.ckpt_path).parent.mkdir(parents=True)
        Path(cfg.ckpt_path).touch()
    validate(cfg, task)
    assert cfg.experiment_name != "adhoc" and isinstance(cfg.seed, int)
    if task == "train":  # a recipe names its run, so make finds its DONE
        assert cfg.run_name == path.stem.replace("fig4_r0_ode_elbo_train_", "fig4_")


def test_submitit_slurm_launcher_composes(tmp_path):
    """`hydra/launcher=submitit_slurm` (the optional `submitit` extra) spreads sweeps on SLURM."""
    pytest.importorskip(
        "hydra_plugins.hydra_submitit_launcher", reason="pip install 'cartoonist[submitit]'"
    )
    over = ["hydra/launcher=submitit_slurm", "hydra.launcher.gpus_per_node=1"]
    over += ["hydra.launcher.timeout_min=60", "trainer=gpu"]
    cfg = compose_cfg("sample", over, tmp_path / "run")
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.trainer.accelerator == "gpu"


@pytest.mark.parametrize(
    "overrides,tag",
    [
        ([], ""),  # the exact oracle keeps the experiment's plain names
        (
            ["model=unet", "ckpt_path=outputs/train/digits_unet/checkpoints/last.ckpt"],
            "__ckpt-digits_unet",
        ),
        (
            ["model=diffusers", "model.path=/models/ddpm-cifar10-32/"],
            "__diffusers-ddpm-cifar10-32",
        ),
        (["model=edm", "model.path=/m/edm-ffhq-64x64.pkl"], "__edm-edm-ffhq-64x64"),
        (["model=edm", "model.path=pkg.nets:Denoiser"], "__edm-pkg.nets-Denoiser"),
    ],
)
def test_hd_threshold_names_and_settings_follow_the_model(overrides, tag, tmp_path):
    """Run names carry the learned model; the oracle's fit applies to the oracle only."""
    for exp in ("hd_threshold", "hd_threshold_baseline"):
        cfg = compose_cfg("sample", [f"experiment={exp}"] + overrides, tmp_path / "run")
        assert cfg.experiment_name == exp + tag
        if not tag:  # oracle: its PPCA fit; its exact log p needs no second estimator
            assert (cfg.model.components, cfg.model.rank) == (16, 8) and cfg.likelihood is None
        else:  # a learned model: no oracle keys; every sample gets a PF-ODE log p
            assert "components" not in cfg.model and cfg.likelihood.divergence == "hutchinson"
    cfg = compose_cfg("figure", ["experiment=png_size"] + overrides, tmp_path / "fig")
    assert cfg.figure_name == "png_size" + tag
