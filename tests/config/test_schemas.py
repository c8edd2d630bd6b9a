"""The sampler/likelihood/noise schemas (cartoonist.pipeline.schemas): same objects as the plain
YAML, and bad keys or values fail at composition with an error naming the key."""

import ast
import functools
import io
import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from cartoonist.pipeline import schemas as config_schemas
from cartoonist.pipeline.schemas import SCHEMAS, register_configs, unknown_keys

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
GROUPS = ("sampler", "likelihood", "noise")
TASK_OF = {"sampler": "sample", "likelihood": "evaluate", "noise": "train"}
CASES = [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]
IDS = [f"{g}={o}" for g, o in CASES]


def _compose(task: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(task, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def _plain(group: str, option: str):
    """The option's YAML without its schema: what composed before the schemas."""
    raw = OmegaConf.load(CONF_DIR / group / f"{option}.yaml")
    return OmegaConf.masked_copy(raw, [k for k in raw if k != "defaults"])


def _overrides(group: str, option: str) -> list[str]:
    over = [f"{group}={option}"]
    if (group, option) == ("likelihood", "sde_tracking"):
        over.append("source=samples")
    return over


def test_every_option_has_a_stored_schema():
    assert {(g, f"{o}_schema") for g, o in CASES} == set(SCHEMAS)
    repo = ConfigStore.instance().repo
    for group, name in SCHEMAS:
        assert f"{name}.yaml" in repo[group]
    for g, o in CASES:
        text = (CONF_DIR / g / f"{o}.yaml").read_text()
        assert f"- {o}_schema" in text and "- _self_" in text


def test_register_configs_is_idempotent():
    register_configs()
    register_configs()
    assert set(SCHEMAS) <= {(g, n[:-5]) for g in GROUPS for n in ConfigStore.instance().repo[g]}


def test_module_imports_nothing_from_cartoonist():
    tree = ast.parse(Path(config_schemas.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    roots = {m.split(".")[0] for m in names}
    assert roots <= {"__future__", "dataclasses", "enum", "typing", "hydra", "omegaconf"}, roots


@pytest.mark.parametrize("group,option", CASES, ids=IDS)
def test_schema_defaults_equal_the_yaml(group, option):
    schema = OmegaConf.structured(SCHEMAS[(group, f"{option}_schema")])
    plain = _plain(group, option)
    assert OmegaConf.to_container(schema) == OmegaConf.to_container(plain)


@pytest.mark.parametrize("group,option", CASES, ids=IDS)
def test_option_instantiates_as_the_plain_yaml(group, option):
    cfg = _compose(TASK_OF[group], _overrides(group, option))
    node, plain = cfg[group], _plain(group, option)
    assert OmegaConf.get_type(node) is SCHEMAS[(group, f"{option}_schema")]
    assert set(node) == set(plain)
    got, want = instantiate(node), instantiate(plain)
    if isinstance(want, functools.partial):
        assert isinstance(got, functools.partial) and got.func is want.func
        assert got.args == want.args == ()
        assert got.keywords == want.keywords
        for k, v in got.keywords.items():  # a choice Enum is a str: same str, same text
            w = want.keywords[k]
            assert isinstance(v, type(w)) and str(v) == str(w) and f"{v}" == f"{w}", k
            assert json.dumps(v) == json.dumps(w), k
    else:  # the noise group: a TrainingNoise, built from plain str/float values
        assert type(got) is type(want)
        for k, v in OmegaConf.to_container(node).items():
            assert type(v) is type(plain[k]) and v == plain[k], k
        for k in ("weighting", "sigmoid_bias", "importance", "ema", "floor"):
            assert getattr(got, k) == getattr(want, k)
            assert type(getattr(got, k)) in (str, float), k
        assert type(got.schedule) is type(want.schedule)
        sd, wd = got.state_dict(), want.state_dict()
        assert sd.keys() == wd.keys() and all(torch.equal(sd[k], wd[k]) for k in sd)


def test_choices_reach_the_target_as_str_and_checkpoint_spec_stays_plain():
    p = instantiate(_compose("sample", ["sampler=hd", "sampler.first_stage=sde"]).sampler)
    assert p.keywords["first_stage"] == "sde" and isinstance(p.keywords["first_stage"], str)
    assert p.keywords["first_stage"] in ("ode", "sde") and {"sde": 1}[p.keywords["first_stage"]]
    over = ["sampler=hd", "sampler.track_logp=true"]  # README: HD samples with their log p
    assert instantiate(_compose("sample", over).sampler).keywords["track_logp"] is True
    lik = _compose("evaluate", ["likelihood.divergence=exact", "likelihood.backend=reverse"])
    kw = instantiate(lik.likelihood).keywords
    assert (kw["divergence"], kw["backend"]) == ("exact", "reverse")
    # the train task saves OmegaConf.to_container(cfg.noise) in checkpoints (weights_only load)
    buf = io.BytesIO()
    torch.save(OmegaConf.to_container(_compose("train", []).noise, resolve=True), buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True)["schedule"] == "vp"


BAD = [
    ("sample", ["+sampler.foo=1"], "sampler.foo"),
    ("sample", ["+sampler.foo.bar=1"], "sampler.foo"),
    ("sample", ["++sampler.foo=1"], "sampler.foo"),
    ("sample", ["sampler.stepz=3"], "stepz"),
    ("sample", ["sampler.steps=abc"], "sampler.steps"),
    ("sample", ["sampler.steps=1.5"], "sampler.steps"),
    ("sample", ["sampler.steps=1e3"], "sampler.steps"),
    ("sample", ["sampler.track_logp=maybe"], "sampler.track_logp"),
    ("sample", ["sampler.logp_scheme=foo"], "sampler.logp_scheme"),
    ("sample", ["sampler=hd", "sampler.lambda_threshold=true"], "sampler.lambda_threshold"),
    ("sample", ["sampler=hd", "sampler.lambda_threshold=abc"], "sampler.lambda_threshold"),
    ("sample", ["sampler=hd", "sampler.first_stage=pf"], "sampler.first_stage"),
    ("sample", ["sampler=hd", "+sampler.foo=1"], "sampler.foo"),
    ("sample", ["sampler=pf_ode", "sampler.track_logp=maybe"], "sampler.track_logp"),
    ("sample", ["sampler=mode_tracking", "sampler.sde_steps=x"], "sampler.sde_steps"),
    ("sample", ["sampler=mode_tracking", "sampler.lambda_t=x"], "sampler.lambda_t"),
    ("sample", ["likelihood=pf_ode", "likelihood.probes=x"], "likelihood.probes"),
    ("sample", ["likelihood=pf_ode", "+likelihood.bar=2"], "likelihood.bar"),
    ("evaluate", ["likelihood.probes=x"], "likelihood.probes"),
    ("evaluate", ["+likelihood.bar=2"], "likelihood.bar"),
    ("evaluate", ["likelihood.divergence=trace"], "likelihood.divergence"),
    ("evaluate", ["likelihood.backend=sideways"], "likelihood.backend"),
    ("evaluate", ["likelihood.rtol=small"], "likelihood.rtol"),
    ("evaluate", ["likelihood=elbo", "likelihood.estimator=mc"], "likelihood.estimator"),
    ("evaluate", ["likelihood=elbo", "likelihood.n_lambda=x"], "likelihood.n_lambda"),
    ("evaluate", ["likelihood=exact", "+likelihood.bar=2"], "likelihood.bar"),
    ("evaluate", ["likelihood=exact", "likelihood.bar=2"], "likelihood.bar"),
    ("evaluate", ["likelihood=sde_tracking", "+likelihood.bar=2"], "likelihood.bar"),
    ("train", ["noise.lambda_min=abc"], "noise.lambda_min"),
    ("train", ["noise.lambda_max=true"], "noise.lambda_max"),
    ("train", ["+noise.baz=1"], "noise.baz"),
    ("train", ["noise=edm", "+noise.baz=1"], "noise.baz"),
    ("sample", ["noise.lambda_min=abc"], "noise.lambda_min"),
    ("sample", ["+noise.baz=1"], "noise.baz"),
    ("evaluate", ["noise=flow", "+noise.baz=1"], "noise.baz"),
    ("evaluate", ["noise=ve", "noise.sigmoid_bias=x"], "noise.sigmoid_bias"),
]


@pytest.mark.parametrize("task,overrides,key", BAD, ids=[" ".join(b[1]) for b in BAD])
def test_bad_key_or_value_fails_before_anything_is_built_naming_the_key(task, overrides, key):
    """At composition (the schemas), or for a `+key=` (which Hydra always lets through) in the
    validation that runs before anything is built."""
    from cartoonist.pipeline import format_error, validate  # the one line the CLI prints

    with pytest.raises(Exception) as e:
        validate(_compose(task, overrides), task)
    assert key in format_error(e.value), format_error(e.value)


@pytest.mark.parametrize("task", ["sample", "evaluate", "train", "figure"])
def test_unknown_keys_is_empty_for_composed_configs(task):
    assert unknown_keys(_compose(task, [])) == []


def test_unknown_keys_names_the_full_key():
    cfg = OmegaConf.create({"a": {"sampler": OmegaConf.structured(config_schemas.HDSampler)}})
    with open_dict(cfg.a.sampler):
        cfg.a.sampler.foo = 1
    assert unknown_keys(cfg) == ["a.sampler.foo"]


EXPERIMENTS = sorted((CONF_DIR / "experiment").glob("*.yaml"))


def _tasks_of(path: Path) -> list[str]:
    if "figure_name:" in path.read_text():
        return ["figure"]
    text = path.read_text()
    if "cartoonist.train" in text:
        return ["train"]
    return ["evaluate"] if "cartoonist.evaluate" in text else ["sample"]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
@pytest.mark.parametrize("debug", [[], ["debug=smoke"]], ids=["full", "smoke"])
def test_experiments_compose_onto_the_schemas(path, debug):
    for task in _tasks_of(path):
        cfg = _compose(task, [f"experiment={path.stem}"] + debug)
        assert unknown_keys(cfg) == []
        for group in GROUPS:
            if cfg.get(group) is not None:
                choice = cfg.hydra.runtime.choices[group]
                assert OmegaConf.get_type(cfg[group]) is SCHEMAS[(group, f"{choice}_schema")]


@pytest.mark.parametrize("exp", ["hd_threshold", "hd_threshold_baseline"])
def test_experiment_sweeps_compose_per_job(exp):
    """Each job of the experiments' sweeps (hydra.sweeper.params) composes onto its schema."""
    sweep = _compose("sample", [f"experiment={exp}"]).hydra.sweeper.params
    jobs = [[]]
    for key, values in sweep.items():
        jobs = [j + [f"{key}={v}"] for j in jobs for v in str(values).split(",")]
    for job in jobs:
        cfg = _compose("sample", [f"experiment={exp}", "model=unet", "ckpt_path=x"] + job)
        assert cfg.sampler.steps == 500 and cfg.likelihood.divergence == "hutchinson"
        if exp == "hd_threshold":
            assert isinstance(cfg.sampler.lambda_threshold, float)
