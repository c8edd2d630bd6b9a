"""Objects of a run from its config: the score (oracle, our checkpoint or a pretrained model).

`build_score` is the one place where a config becomes a model; sample, evaluate, figures and the
demo all go through it.
"""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cartoonist.errors import ConfigError
from cartoonist.models.adapters import NetScore
from cartoonist.models.checkpoint import load_denoiser
from cartoonist.models.pretrained import PretrainedModel
from cartoonist.pipeline.validate import check_threshold

__all__ = ["build_score", "event_shape_of"]


def build_score(cfg: DictConfig, dm):
    """(score function, schedule, oracle or None, log_jacobian) for sample/evaluate.

    A network-backed score (our checkpoints, model=diffusers, model=edm) is a
    `cartoonist.models.adapters.ScoreModule`: an nn.Module with `event_shape` and
    `log_jacobian`, which the predict loop moves to the trainer's device. A pretrained model
    brings its own schedule (its trained λ range); the `noise` group is then unused.
    """
    if cfg.get("ckpt_path"):
        net, noise, spec = load_denoiser(cfg.ckpt_path, cfg.get("allow_pickle", False))
        logjac = float(spec["log_jacobian"])
        score = NetScore(net, noise.schedule, spec["event_shape"], logjac)
        return score, noise.schedule, None, logjac
    model = instantiate(cfg.model)
    if isinstance(model, PretrainedModel):
        score = model.load()
        _check_pretrained_fits(cfg, dm, score)
        return score, score.schedule, None, score.log_jacobian
    noise = instantiate(cfg.noise)
    oracle = model.build(dm, noise.schedule, seed=cfg.seed)
    return oracle, noise.schedule, oracle, dm.log_jacobian


def _check_pretrained_fits(cfg: DictConfig, dm, score) -> None:
    """The sampler's threshold lies in the model's λ range; evaluated data have its shape."""
    sch = score.schedule
    thr = OmegaConf.select(cfg, "sampler.lambda_threshold")
    if thr is not None:
        check_threshold(sch, thr, "sampler.lambda_threshold", "the model's trained log-SNR range")
    data_shape = getattr(dm, "event_shape", None)
    takes = tuple(getattr(score, "image_shape", None) or score.event_shape)  # latent: images
    if cfg.get("source") == "dataset" and tuple(data_shape or ()) != takes:
        raise ConfigError(
            f"the dataset's examples have shape {data_shape}, the model takes {takes}"
            f" (set dataset.source.size / channels to match)"
        )


def event_shape_of(score, dm) -> tuple:
    """Shape of one example: the model's if it has one (pretrained, checkpoint), else the data."""
    shape = getattr(score, "event_shape", None)
    return tuple(shape) if shape is not None else tuple(dm.event_shape)
