"""Bad inputs over every group: each exits 2 with one line naming the key, builds nothing, writes
nothing (no `DONE`), for a single run and for every job of a multirun.

The bulk runs in-process through `preflight` (the command line's own check: composition, then
`validate`), with every network, data load and Trainer patched to fail the test if built; a sample
of cases runs as real `python -m cartoonist.<task>` subprocesses.
"""

from __future__ import annotations

import functools
import gzip
import os
import subprocess
import sys

import pytest

from cartoonist.pipeline import preflight
from tests.helpers.pipeline import spec_checkpoint

ENV = dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
ENV.pop("HYDRA_FULL_ERROR", None)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad data folders and files, a tiny diffusers folder, spec-only checkpoints."""
    from PIL import Image

    root = tmp_path_factory.mktemp("fuzz_files")
    (root / "empty").mkdir()
    (root / "a_file").write_text("not a folder")
    corrupt = root / "corrupt"
    corrupt.mkdir()
    (corrupt / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    truncated = root / "truncated"
    truncated.mkdir()
    Image.new("RGB", (16, 16), (10, 200, 30)).save(truncated / "t.png")
    data = (truncated / "t.png").read_bytes()
    (truncated / "t.png").write_bytes(data[: len(data) // 2])
    mnist = root / "mnist_bad_magic"
    mnist.mkdir()
    (mnist / "train-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04" + b"\0" * 100)
    short = root / "mnist_short"
    short.mkdir()
    header = bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(short / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + b"\0" * 100)  # 10 images declared, 100 bytes given
    mlp = spec_checkpoint(root / "mlp.ckpt", "cartoonist.models.MLP", (2,), hidden=16, depth=1)
    unet = spec_checkpoint(
        root / "unet.ckpt", "cartoonist.models.UNet", (1, 8, 8), channels=[32, 64, 64]
    )
    out = {"root": root, "mlp": mlp, "unet": unet}
    try:
        from tests.helpers.pretrained import save_tiny_diffusers

        out["ddpm"] = save_tiny_diffusers(root / "ddpm")  # 3 × 8 × 8
    except ImportError:  # the diffusers extra is optional
        out["ddpm"] = None
    return out


@pytest.fixture(autouse=True)
def nothing_is_built(monkeypatch):
    """Every network, data load, checkpoint load and Trainer fails the test if reached."""
    import lightning

    from cartoonist.data import datamodule, sources
    from cartoonist.models import checkpoint, diffusers, edm, mlp, oracle, unet
    from cartoonist.pipeline import build

    def boom(name, original):
        @functools.wraps(original)  # keeps the signature (the checks read arguments)
        def f(*a, **k):
            raise AssertionError(f"{name} was built before the config was checked")

        return f

    for obj, attr in [
        (mlp.MLP, "__init__"),
        (unet.UNet, "__init__"),
        (oracle.OracleModel, "build"),
        (diffusers.DiffusersModel, "load"),
        (edm.EDMDenoiser, "load"),
        (datamodule.ArrayDataModule, "setup"),
        (sources._Pixels, "load"),
        (sources._Synthetic, "load"),
        (lightning.Trainer, "__init__"),
        (checkpoint, "load_denoiser"),
        (build, "load_denoiser"),
        (build, "build_score"),
    ]:
        name = f"{getattr(obj, '__name__', obj)}.{attr}"
        monkeypatch.setattr(obj, attr, boom(name, getattr(obj, attr)))


def _fill(over: list[str], files: dict) -> list[str]:
    return [o.format(**{k: v for k, v in files.items() if v is not None}) for o in over]


D = "dataset=image_folder"
OR = ["model=oracle"]
HD = ["sampler=hd"]
MT = ["sampler=mode_tracking"]
DDPM = ["model=diffusers", "model.path={ddpm}"]

# (task, overrides, what the one line must name); {name} is a path from the `files` fixture
CASES: list[tuple[str, list[str], str]] = [
    # -- top level, sample ------------------------------------------------------------------------
    ("sample", ["+n_sample=16"], "n_sample"),
    ("sample", ["+foo=1"], "foo"),
    ("sample", ["++bar=1"], "bar"),
    ("sample", ["seed=true"], "seed"),
    ("sample", ["seed=-1"], "seed"),
    ("sample", ["seed=2**64"], "seed"),
    ("sample", ["seed=18446744073709551616"], "seed"),
    ("sample", ["seed=1.5"], "seed"),
    ("sample", ["seed=abc"], "seed"),
    ("sample", ["n_samples=1e11"], "n_samples"),
    ("sample", ["n_samples=100000000000"], "n_samples"),
    ("sample", ["n_samples=0"], "n_samples"),
    ("sample", ["n_samples=-3"], "n_samples"),
    ("sample", ["n_samples=true"], "n_samples"),
    ("sample", ["n_samples=abc"], "n_samples"),
    ("sample", ["batch_size=0"], "batch_size"),
    ("sample", ["batch_size=2.5"], "batch_size"),
    ("sample", ["batch_size=false"], "batch_size"),
    ("sample", ["allow_pickle=maybe"], "allow_pickle"),
    ("sample", ["allow_pickle=2"], "allow_pickle"),
    ("sample", ["tags=5"], "tags"),
    ("sample", ["ckpt_path=/no/such.ckpt", "model=mlp"], "ckpt_path"),
    ("sample", ["model=mlp"], "ckpt_path"),
    ("sample", ["run_name=../../escaped"], "run_name"),
    ("sample", ["paths.output_root=/etc/passwd"], "paths.output_root"),
    ("sample", ["+paths.foo=1"], "paths.foo"),
    # -- top level, evaluate ----------------------------------------------------------------------
    ("evaluate", ["sde_steps=0"], "sde_steps"),
    ("evaluate", ["sde_steps=-1"], "sde_steps"),
    ("evaluate", ["sde_steps=1.5"], "sde_steps"),
    ("evaluate", ["sde_steps=true"], "sde_steps"),
    ("evaluate", ["source=foo"], "source"),
    ("evaluate", ["source=true"], "source"),
    ("evaluate", ["sde_logp_scheme=rk4"], "sde_logp_scheme"),
    ("evaluate", ["+n_sample=16"], "n_sample"),
    ("evaluate", ["n_samples=1e11"], "n_samples"),
    ("evaluate", ["seed=-5"], "seed"),
    ("evaluate", ["likelihood=sde_tracking", "source=dataset"], "source=samples"),
    # -- top level, train -------------------------------------------------------------------------
    ("train", ["+n_sample=16"], "n_sample"),
    ("train", ["seed=true"], "seed"),
    ("train", ["seed=-1"], "seed"),
    ("train", ["optim.lr=nan"], "optim.lr"),
    ("train", ["optim.lr=-1"], "optim.lr"),
    ("train", ["optim.lr=0"], "optim.lr"),
    ("train", ["optim.lr=abc"], "optim.lr"),
    ("train", ["optim.lr=inf"], "optim.lr"),
    ("train", ["optim.lr=true"], "optim.lr"),
    ("train", ["optim.warmup_steps=-1"], "optim.warmup_steps"),
    ("train", ["optim.warmup_steps=1.5"], "optim.warmup_steps"),
    ("train", ["optim.ema_decay=1.5"], "optim.ema_decay"),
    ("train", ["optim.ema_decay=1"], "optim.ema_decay"),
    ("train", ["optim.ema_decay=-0.1"], "optim.ema_decay"),
    ("train", ["optim.val_lambdas=0"], "optim.val_lambdas"),
    ("train", ["+optim.weight_decay=0.1"], "optim.weight_decay"),
    ("train", ["model=oracle"], "model=oracle"),
    ("train", ["model=diffusers", "model.path=/tmp"], "pretrained"),
    # -- trainer ----------------------------------------------------------------------------------
    ("train", ["trainer.val_check_interval=0"], "trainer.val_check_interval"),
    ("train", ["trainer.val_check_interval=-1"], "trainer.val_check_interval"),
    ("train", ["trainer.val_check_interval=1.5"], "trainer.val_check_interval"),
    ("train", ["trainer.val_check_interval=abc"], "trainer.val_check_interval"),
    ("train", ["trainer.max_steps=0"], "trainer.max_steps"),
    ("train", ["trainer.max_steps=-2"], "trainer.max_steps"),
    ("train", ["trainer.max_steps=1e3"], "trainer.max_steps"),
    ("train", ["trainer.devices=0"], "trainer.devices"),
    ("train", ["trainer.devices=abc"], "trainer.devices"),
    ("train", ["trainer.devices=true"], "trainer.devices"),
    ("train", ["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps"),
    ("train", ["trainer.enable_progress_bar=maybe"], "trainer.enable_progress_bar"),
    ("train", ["trainer.enable_progress_bar=2"], "trainer.enable_progress_bar"),
    ("train", ["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch"),
    ("train", ["+trainer.foo=1"], "trainer.foo"),
    ("train", ["trainer.foo=1"], "trainer.foo"),
    ("train", ["+trainer.limit_val_batches=-1"], "trainer.limit_val_batches"),
    ("train", ["trainer=nope"], "trainer/nope"),
    ("sample", ["trainer.devices=-5"], "trainer.devices"),
    ("sample", ["+trainer.max_stepz=3"], "trainer.max_stepz"),
    # -- callbacks --------------------------------------------------------------------------------
    ("train", ["callbacks.checkpoint.every_n_train_steps=-1"], "every_n_train_steps"),
    ("train", ["callbacks.checkpoint.every_n_train_steps=abc"], "every_n_train_steps"),
    ("train", ["callbacks.checkpoint.save_top_k=-2"], "callbacks.checkpoint.save_top_k"),
    ("train", ["callbacks.checkpoint.save_last=maybe"], "callbacks.checkpoint.save_last"),
    ("train", ["+callbacks.checkpoint.foo=1"], "callbacks.checkpoint.foo"),
    ("train", ["callbacks.checkpoint._target_=builtins.open"], "callbacks.checkpoint._target_"),
    ("train", ["callbacks=nope"], "callbacks/nope"),
    # -- logger -----------------------------------------------------------------------------------
    ("train", ["+logger.csv.foo=1"], "logger.csv.foo"),
    ("train", ["logger.csv._target_=os.system"], "logger.csv._target_"),
    ("train", ["logger=nope"], "logger/nope"),
    ("sample", ["logger.wandb.offline=maybe"], "logger.wandb.offline"),
    ("sample", ["logger.wandb.tags=5"], "logger.wandb.tags"),
    # -- optim is train's only: elsewhere unknown -------------------------------------------------
    ("sample", ["+optim.lr=1"], "optim"),
    # -- dataset ----------------------------------------------------------------------------------
    ("train", ["dataset=nope"], "dataset/nope"),
    ("train", ["dataset.batch_size=0"], "dataset.batch_size"),
    ("train", ["dataset.batch_size=abc"], "dataset.batch_size"),
    ("train", ["dataset.val_fraction=1.5"], "dataset.val_fraction"),
    ("train", ["dataset.val_fraction=1"], "dataset.val_fraction"),
    ("train", ["dataset.val_fraction=-0.1"], "dataset.val_fraction"),
    ("train", ["dataset.seed=-1"], "dataset.seed"),
    ("train", ["+dataset.foo=1"], "dataset.foo"),
    ("train", ["+dataset.num_workers=-1"], "dataset.num_workers"),
    ("train", ["dataset.source.size=0"], "dataset.source.size"),
    ("train", ["dataset.source.size=abc"], "dataset.source.size"),
    ("train", ["dataset.source.dequantize=maybe"], "dataset.source.dequantize"),
    ("train", ["dataset.source.dequantize=2"], "dataset.source.dequantize"),
    ("train", ["dataset.source.pad_to=0"], "dataset.source.pad_to"),
    ("train", ["+dataset.source.foo=1"], "dataset.source.foo"),
    ("train", ["dataset.source._target_=os.system"], "dataset.source._target_"),
    ("train", ["dataset=gmm2d", "dataset.source.n=0"], "dataset.source.n"),
    ("train", ["dataset=gmm2d", "dataset.source.n=1e11"], "dataset.source.n"),
    ("train", ["dataset=gmm_nd", "dataset.source.dim=0"], "dataset.source.dim"),
    ("train", ["dataset=gmm_nd", "dataset.source.rank=0"], "dataset.source.rank"),
    ("train", ["dataset=gmm_nd", "dataset.source.components=x"], "dataset.source.components"),
    ("train", ["dataset=faces", "dataset.source.include_nonfaces=2"], "include_nonfaces"),
    ("train", ["dataset=patches", "dataset.source.n=0"], "dataset.source.n"),
    ("train", ["dataset=patches", "dataset.source.size=-1"], "dataset.source.size"),
    ("train", [D], "dataset.source.path"),
    ("train", [D, "dataset.source.path=/no/such/dir"], "dataset.source.path"),
    ("train", [D, "dataset.source.path={root}/empty"], "dataset.source.path"),
    ("train", [D, "dataset.source.path={root}/a_file"], "dataset.source.path"),
    ("train", [D, "dataset.source.path={root}/corrupt"], "dataset.source.path"),
    ("train", [D, "dataset.source.path={root}/truncated"], "dataset.source.path"),
    ("train", [D, "dataset.source.path={root}", "dataset.source.channels=2"], "channels"),
    ("train", [D, "dataset.source.path={root}", "dataset.source.size=0"], "dataset.source.size"),
    ("train", ["dataset=mnist", "dataset.source.path={root}/mnist_bad_magic"], "source.path"),
    ("train", ["dataset=mnist", "dataset.source.path={root}/mnist_short"], "source.path"),
    ("train", ["dataset=mnist", "dataset.source.path={root}/empty"], "dataset.source.path"),
    ("train", ["dataset=mnist", "dataset.source.split=val"], "dataset.source.split"),
    ("train", ["dataset=cifar10", "dataset.source.path={root}/empty"], "dataset.source.path"),
    ("train", ["dataset=cifar10", "dataset.source.path=/no/such"], "dataset.source.path"),
    ("train", ["dataset=none"], "dataset=none"),
    ("sample", ["dataset=none"], "dataset=none"),
    # -- model ------------------------------------------------------------------------------------
    ("sample", ["model=nope"], "model/nope"),
    ("sample", ["model.rank=0"], "model.rank"),
    ("sample", ["model.rank=-1"], "model.rank"),
    ("sample", ["model.components=0"], "model.components"),
    ("sample", ["model.components=abc"], "model.components"),
    ("sample", ["model.iters=1.5"], "model.iters"),
    ("sample", ["+model.foo=1"], "model.foo"),
    ("sample", ["model._target_=builtins.open"], "model._target_"),
    ("train", ["model=mlp", "model.hidden=0"], "model.hidden"),
    ("train", ["model=mlp", "model.depth=abc"], "model.depth"),
    ("train", ["model=mlp", "model.emb_dim=1"], "model.emb_dim"),
    ("train", ["model=mlp", "+model.layer_norm=2"], "model.layer_norm"),
    ("train", ["model=mlp", "+model.foo=1"], "model.foo"),
    ("train", ["model.channels=[]"], "model.channels"),
    ("train", ["model.channels=[32,0]"], "model.channels"),
    ("train", ["model.channels=abc"], "model.channels"),
    ("train", ["model.blocks_per_level=0"], "model.blocks_per_level"),
    ("train", ["+model.dropout=1.5"], "model.dropout"),
    ("train", ["+model.groups=0"], "model.groups"),
    ("train", ["model.emb_dim=true"], "model.emb_dim"),
    ("sample", ["model=diffusers"], "model.path"),
    ("sample", ["model=diffusers", "model.path=/no/such"], "model.path"),
    ("sample", [*DDPM, "model.timestep=foo"], "model.timestep"),
    ("sample", [*DDPM, "model.attention=fast"], "model.attention"),
    ("sample", [*DDPM, "model.class_labels=-1"], "model.class_labels"),
    ("sample", [*DDPM, "model.data_range=[1,0]"], "model.data_range"),
    ("sample", [*DDPM, "model.event_shape=[3,64,64]"], "model.event_shape"),
    ("sample", [*DDPM, "model.event_shape=[1,8,8]"], "model.event_shape"),
    ("sample", [*DDPM, "model.event_shape=[0,8]"], "model.event_shape"),
    ("sample", [*DDPM, "+model.foo=1"], "model.foo"),
    (
        "sample",
        [*DDPM, "model.attention=default", "sampler=hd", "sampler.track_logp=true"],
        "model.attention",
    ),
    ("sample", [*DDPM, "model.attention=default", "likelihood=pf_ode"], "model.attention"),
    (
        "sample",
        [*DDPM, "model.attention=default", "sampler=pf_ode", "sampler.track_logp=true"],
        "model.attention",
    ),
    ("evaluate", [*DDPM, "model.attention=default"], "model.attention"),
    ("sample", [*DDPM, "model.attention=default", "sampler=mode_tracking"], "model.attention"),
    ("sample", [*DDPM, "ckpt_path={unet}"], "ckpt_path"),
    ("sample", ["model=edm"], "model.path"),
    (
        "sample",
        ["model=edm", "model.path=x", "model.event_shape=[1,4,4]", "model.sigma_min=-1"],
        "model.sigma_min",
    ),
    (
        "sample",
        ["model=edm", "model.path=x", "model.event_shape=[1,4,4]", "model.schedule=ve"],
        "model.schedule",
    ),
    ("sample", ["model=edm", "model.path=x", "model.event_shape=abc"], "model.event_shape"),
    (
        "sample",
        ["model=edm", "model.path=x", "model.event_shape=[1,4,4]", "model.allow_pickle=2"],
        "model.allow_pickle",
    ),
    # -- a checkpoint brings its own network ------------------------------------------------------
    ("sample", ["model=unet", "ckpt_path={mlp}"], "model=unet"),
    ("sample", ["model=mlp", "ckpt_path={unet}"], "model=mlp"),
    ("sample", ["model=unet", "ckpt_path={unet}", "model.channels=[8,8]"], "model.channels"),
    ("sample", ["model=mlp", "ckpt_path={mlp}", "dataset=digits"], "dataset=digits"),
    ("evaluate", ["model=unet", "ckpt_path={unet}", "dataset=gmm2d"], "dataset=gmm2d"),
    ("sample", ["model=unet", "ckpt_path={root}/a_file"], "checkpoint"),
    # -- noise ------------------------------------------------------------------------------------
    ("train", ["noise=nope"], "noise/nope"),
    ("train", ["noise.lambda_min=abc"], "noise.lambda_min"),
    ("train", ["noise.lambda_min=nan"], "noise.lambda_min"),
    ("train", ["noise.lambda_max=true"], "noise.lambda_max"),
    ("train", ["noise.lambda_min=20"], "noise.lambda_min"),
    ("train", ["noise.schedule=cosine"], "noise.schedule"),
    ("train", ["noise.weighting=foo"], "noise.weighting"),
    ("train", ["noise.importance=foo"], "noise.importance"),
    ("train", ["+noise.foo=1"], "noise.foo"),
    ("train", ["noise=edm", "noise.sigmoid_bias=x"], "noise.sigmoid_bias"),
    # -- sampler ----------------------------------------------------------------------------------
    ("sample", ["sampler=nope"], "sampler/nope"),
    ("sample", ["+sampler.foo=1"], "sampler.foo"),
    ("sample", ["sampler.stepz=3"], "stepz"),
    ("sample", ["sampler.steps=0"], "sampler.steps"),
    ("sample", ["sampler.steps=-5"], "sampler.steps"),
    ("sample", ["sampler.steps=abc"], "sampler.steps"),
    ("sample", ["sampler.track_logp=maybe"], "sampler.track_logp"),
    ("sample", ["sampler.track_logp=2"], "sampler.track_logp"),
    ("sample", ["sampler.track_logp=yes"], "sampler.track_logp"),
    ("sample", ["sampler.logp_scheme=rk4"], "sampler.logp_scheme"),
    ("sample", [*HD, "sampler.lambda_threshold=true"], "sampler.lambda_threshold"),
    ("sample", [*HD, "sampler.lambda_threshold=50"], "sampler.lambda_threshold"),
    ("sample", [*HD, "sampler.lambda_threshold=10"], "sampler.lambda_threshold"),
    ("sample", [*HD, "sampler.lambda_threshold=nan"], "sampler.lambda_threshold"),
    ("sample", [*HD, "sampler.first_stage=foo"], "sampler.first_stage"),
    ("sample", [*HD, "sampler.method=foo"], "sampler.method"),
    ("sample", [*HD, "sampler.track_logp=2"], "sampler.track_logp"),
    ("sample", [*HD, "+sampler.foo=1"], "sampler.foo"),
    ("sample", ["sampler=pf_ode", "sampler.method=foo"], "sampler.method"),
    ("sample", ["sampler=pf_ode", "sampler.steps=0"], "sampler.steps"),
    ("sample", ["sampler=heun", "sampler.track_logp=maybe"], "sampler.track_logp"),
    ("sample", [*MT, "sampler.lambda_t=20"], "sampler.lambda_t"),
    ("sample", [*MT, "sampler.lambda_t=nan"], "sampler.lambda_t"),
    ("sample", [*MT, "sampler.lambda_t=-10"], "sampler.lambda_t"),
    ("sample", [*MT, "sampler.lambda_t=10"], "sampler.lambda_t"),
    ("sample", [*MT, "sampler.sde_steps=0"], "sampler.sde_steps"),
    ("sample", [*MT, "sampler.steps=0"], "sampler.steps"),
    ("sample", [*MT, "dataset=cifar10", "dataset.source.path={root}"], "sampler=mode_tracking"),
    ("sample", [*MT, "dataset=patches", "dataset.source.size=32"], "sampler=mode_tracking"),
    ("sample", ["sampler._target_=os.system"], "sampler._target_"),
    # -- likelihood -------------------------------------------------------------------------------
    ("evaluate", ["likelihood=nope"], "likelihood/nope"),
    ("evaluate", ["likelihood.divergence=foo"], "likelihood.divergence"),
    ("evaluate", ["likelihood.probes=0"], "likelihood.probes"),
    ("evaluate", ["likelihood.probes=x"], "likelihood.probes"),
    ("evaluate", ["likelihood.backend=sideways"], "likelihood.backend"),
    ("evaluate", ["likelihood.method=foo"], "likelihood.method"),
    ("evaluate", ["likelihood.steps=0"], "likelihood.steps"),
    ("evaluate", ["likelihood.rtol=-1"], "likelihood.rtol"),
    ("evaluate", ["likelihood.atol=nan"], "likelihood.atol"),
    ("evaluate", ["+likelihood.bar=2"], "likelihood.bar"),
    ("evaluate", ["likelihood=elbo", "likelihood.n_lambda=0"], "likelihood.n_lambda"),
    ("evaluate", ["likelihood=elbo", "likelihood.estimator=mc"], "likelihood.estimator"),
    ("evaluate", ["likelihood=exact", "model=unet", "ckpt_path={unet}"], "likelihood=exact"),
    ("sample", ["likelihood=sde_tracking"], "likelihood=sde_tracking"),
    ("sample", ["likelihood=pf_ode", "likelihood.probes=0"], "likelihood.probes"),
    # -- figure and demo --------------------------------------------------------------------------
    ("figure", [], "figure_name"),
    ("figure", ["experiment=nope"], "experiment/nope"),
    ("figure", ["experiment=fig3_tracking", "+n_sample=3"], "n_sample"),
    ("figure", ["experiment=fig3_tracking", "seed=-1"], "seed"),
    ("figure", ["experiment=fig3_tracking", "smoke=maybe"], "smoke"),
    ("figure", ["experiment=fig3_tracking", "allow_pickle=2"], "allow_pickle"),
    ("figure", ["experiment=fig1_hd_samples", "paths.output_root={root}"], "ckpt_path"),
    ("demo", ["n_samples=0"], "n_samples"),
    ("demo", ["sde_steps=abc"], "sde_steps"),
    ("demo", ["hd_steps=-1"], "hd_steps"),
    ("demo", ["thresholds=[a,b]"], "thresholds[0]"),
    ("demo", ["seed=true"], "seed"),
    ("demo", ["+n_sample=3"], "n_sample"),
    ("demo", ["model.rank=0"], "model.rank"),
    # -- Hydra's own errors: one line too ---------------------------------------------------------
    ("sample", ["sampler.steps=["], "["),
    ("sample", ["sampler=hd", "sampler.lambda_threshold=0,50"], "sampler.lambda_threshold"),
    ("sample", ["seed=null"], "seed"),
]


@pytest.mark.parametrize(
    "task,overrides,key", CASES, ids=[f"{t}:{' '.join(o)}" for t, o, _ in CASES]
)
def test_bad_input_is_one_line_naming_the_key(task, overrides, key, files, tmp_path, capsys):
    over = _fill(overrides, files)
    if any(o.startswith("model.path=") and "None" in o for o in over) or (
        "{ddpm}" in " ".join(overrides) and files["ddpm"] is None
    ):
        pytest.skip("needs the diffusers extra")
    if not any(o.startswith("paths.output_root=") for o in over):
        over.append(f"paths.output_root={tmp_path / 'out'}")
    with pytest.raises(SystemExit) as e:
        preflight(task, over)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert key in err[0], err[0]
    assert not (tmp_path / "out").exists()  # nothing written, no DONE


def test_there_are_enough_cases_over_every_group():
    assert len(CASES) >= 150
    text = " ".join(" ".join(o) for _, o, _ in CASES)
    for group in ("dataset", "model", "noise", "sampler", "likelihood", "trainer", "logger"):
        assert f"{group}." in text and f"{group}=" in text, group
    assert "callbacks." in text and "optim." in text
    assert {t for t, _, _ in CASES} == {"train", "sample", "evaluate", "figure", "demo"}


MULTIRUN = [
    # (task, overrides, the bad job's override)
    ("sample", ["-m", "sampler=hd", "sampler.lambda_threshold=0,50,4"], "lambda_threshold=50"),
    ("sample", ["-m", "sampler=sde,pf_ode", "sampler.steps=0"], "sampler.steps"),
    ("sample", ["-m", "seed=0,1,-1"], "seed=-1"),
    ("sample", ["-m", "sampler=sde,nope"], "sampler/nope"),
    ("sample", ["experiment=hd_threshold", "sampler.lambda_threshold=-4,40"], "=40"),
    ("train", ["-m", "optim.lr=1e-3,nan"], "optim.lr=nan"),
    ("evaluate", ["-m", "likelihood=pf_ode,elbo", "likelihood.probes=0"], "likelihood.probes"),
]


@pytest.mark.parametrize("task,overrides,key", MULTIRUN, ids=[" ".join(m[1]) for m in MULTIRUN])
def test_every_multirun_job_is_checked_before_the_first(task, overrides, key, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        preflight(task, overrides + [f"paths.output_root={tmp_path / 'out'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and key in err[0], err
    assert not (tmp_path / "out").exists()


def test_good_multirun_passes_the_preflight(tmp_path, capsys):
    preflight("sample", ["-m", "sampler=hd", "sampler.lambda_threshold=-4,0,4"])
    preflight("sample", ["experiment=hd_threshold", "sampler.lambda_threshold=-4,4"])
    assert capsys.readouterr().err == ""


def test_hydra_full_error_shows_the_traceback(monkeypatch):
    from cartoonist.errors import ConfigError

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match="seed"):
        preflight("sample", ["seed=-1"])


SUBPROCESS = [
    ("sample", ["+n_sample=16"], "n_sample"),
    ("sample", ["sampler.track_logp=maybe"], "sampler.track_logp"),
    ("sample", ["sampler=mode_tracking", "sampler.lambda_t=20"], "sampler.lambda_t"),
    ("train", ["optim.lr=nan"], "optim.lr"),
    ("train", ["trainer.val_check_interval=0"], "trainer.val_check_interval"),
    ("evaluate", ["sde_steps=0"], "sde_steps"),
    ("sample", ["sampler=nope"], "sampler/nope"),
    ("sample", ["-m", "sampler=hd", "sampler.lambda_threshold=0,50,4"], "lambda_threshold=50"),
]


@pytest.mark.parametrize(
    "task,overrides,key", SUBPROCESS, ids=[" ".join(s[1]) for s in SUBPROCESS]
)
def test_command_line_exits_2_with_one_line(task, overrides, key, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", f"cartoonist.{task}", *overrides, f"paths.output_root={out}"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=600,
    )
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and key in err[0], r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not out.exists() and not list(tmp_path.rglob("DONE"))
