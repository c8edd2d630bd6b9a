# cartoonist — `make help` lists the targets.
SHELL := /bin/bash
PY_SYS ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export WANDB_MODE ?= offline
OUT := $(or $(CARTOONIST_OUTPUT_ROOT),outputs)

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	@# The CPU build of torch on local disk; installed first so nothing pulls a CUDA torch.
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install cartoonist with its dev extras

demo: $(STAMP) ## The main job: Theorem 1 tracking + high-density samples on the digits oracle (~10 s)
	$(PY) -m cartoonist.demo $(ARGS)

smoke: $(STAMP) ## train, sample and evaluate end to end with debug=smoke (seconds each)
	$(PY) -m cartoonist.train debug=smoke model=mlp dataset=gmm2d run_name=smoke $(ARGS)
	$(PY) -m cartoonist.sample debug=smoke sampler=hd run_name=smoke $(ARGS)
	$(PY) -m cartoonist.evaluate debug=smoke likelihood=pf_ode run_name=smoke $(ARGS)

smoke-figures: $(STAMP) ## Every figure at debug=smoke: tiny sizes, ~1 min → outputs/smoke/figures/
	$(PY) -m cartoonist.train debug=smoke dataset=digits model=unet run_name=fig4_digits_elbo \
		callbacks.checkpoint.every_n_train_steps=4
	@for fig in fig3_tracking fig5_mode_tracking png_size fig1_hd_samples; do \
	  $(PY) -m cartoonist.figure experiment=$$fig debug=smoke $(ARGS) || exit 1; done

train-digits: $(STAMP) ## Train the small U-Net on sklearn digits (likelihood weighting; ~10 min on 2 cores)
	$(PY) -m cartoonist.train dataset=digits model=unet noise.weighting=elbo trainer.max_steps=3000 \
		experiment_name=digits run_name=digits_unet_elbo $(ARGS)

sync-wandb: ## Upload offline wandb runs under outputs/ (needs a wandb account and WANDB_API_KEY)
	@for d in $$(find outputs -type d -name "offline-run-*"); do $(VENV)/bin/wandb sync "$$d"; done

fig3_tracking: $(STAMP) ## Figure 3: Theorem 1 tracking on 1-D/2-D mixtures, both r updates (~25 s) → outputs/figures/
	$(PY) -m cartoonist.figure experiment=fig3_tracking $(ARGS)

fig5_mode_tracking: $(STAMP) ## Figure 5: mode-tracking ODE vs Newton vs HD-ODE (~10 s) → outputs/figures/
	$(PY) -m cartoonist.figure experiment=fig5_mode_tracking $(ARGS)

# Fig. 1 needs the digits model of Fig. 4 unless ARGS names another model (model=… or ckpt_path=…).
FIG1_NEEDS := $(if $(filter model=% ~model ckpt_path=%,$(ARGS)),,$(OUT)/train/fig4_digits_elbo/DONE)
fig1_hd_samples: $(STAMP) $(FIG1_NEEDS) ## Fig. 1: HD modes vs posterior samples: faces/patches oracles + digits U-Net (~35 s)
	$(PY) -m cartoonist.figure experiment=fig1_hd_samples $(ARGS)

# ARGS="model=diffusers model.path=<folder> device=cuda" (or ckpt_path=... model=unet): that model's
# samples, PF-ODE log p, outputs named png_size__<model>.
png_size: $(STAMP) ## −log p vs PNG size of samples on the faces oracle (or ARGS="model=..."), Spearman ρ (~15 s)
	$(PY) -m cartoonist.figure experiment=png_size $(ARGS)

# The three trained models of Fig. 4 (Fig. 1 uses digits_elbo); their recipes are
# conf/experiment/fig4_r0_ode_elbo_train_<name>.yaml. Each is a file target on its run's DONE, so it
# trains once; TRAIN_ARGS passes overrides to training.
FIG4_MODELS := digits_elbo digits_sigmoid gmm2d_mlp
$(OUT)/train/fig4_%/DONE: | $(STAMP)
	$(PY) -m cartoonist.train experiment=fig4_r0_ode_elbo_train_$* $(TRAIN_ARGS)

fig-models: $(FIG4_MODELS:%=$(OUT)/train/fig4_%/DONE) ## Train the 3 small models of Figs. 4 and 1 once (~3 min; skipped when DONE)

FIG4_EVAL := "digits_elbo digits unet" "digits_sigmoid digits unet" "gmm2d_mlp gmm2d mlp"
fig4_r0_ode_elbo: fig-models ## Fig. 4: r₀ vs PF-ODE vs ELBO of the 3 trained models (~2.5 min after fig-models)
	@for spec in $(FIG4_EVAL); do set -- $$spec; \
	  for lik in pf_ode elbo; do \
	    $(PY) -m cartoonist.evaluate experiment=fig4_r0_ode_elbo dataset=$$2 model=$$3 likelihood=$$lik \
	      ckpt_path=$(OUT)/train/fig4_$$1/checkpoints/last.ckpt run_name=fig4_$$1__$$lik $(ARGS) \
	      || exit 1; done; done
	$(PY) experiments/fig4_r0_ode_elbo/plot.py $(OUT)

# ARGS go to both sweeps and the collector, e.g. "model=diffusers model.path=<folder> trainer=gpu"
# (PF-ODE log p of every sample; outputs named hd_threshold__<model>); HD_ARGS to the HD sweep
# only, e.g. HD_ARGS="sampler.lambda_threshold=-4,0,4".
hd_threshold: $(STAMP) ## Algorithm 1 threshold sweep (Hydra multirun, digits oracle or ARGS="model=...", ~35 s) → outputs/figures/
	$(PY) -m cartoonist.sample experiment=hd_threshold_baseline $(ARGS)
	$(PY) -m cartoonist.sample experiment=hd_threshold $(ARGS) $(HD_ARGS)
	$(PY) experiments/hd_threshold/plot.py $(ARGS)

# ARGS="model=diffusers model.path=<folder> device=cuda" (or model=edm ..., ckpt_path=...): that
# model's HD samples at compute.thresholds beside its regular samples of the same noise, each with
# its tracked log p; outputs named hd_families__<model>.
hd_families: $(STAMP) ## HD samples at several thresholds beside regular ones (same noise), each with log p (digits oracle or ARGS="model=...")
	$(PY) -m cartoonist.figure experiment=hd_families $(ARGS)

# Quick oracle figures first, then the trained models (once), then the figures that use them.
FIGURES := fig3_tracking fig5_mode_tracking png_size hd_threshold fig-models fig4_r0_ode_elbo \
	fig1_hd_samples
figures: $(FIGURES) ## Every figure (7.2 min measured on 2 idle cores; a rerun skips what is DONE: ~1 min)

plot-%: $(STAMP) ## Re-plot a figure from outputs/figures/<name>.csv (e.g. make plot-fig3_tracking)
	$(PY) experiments/replot.py $*

# -- benchmarks (issue 5): ratios measured in one process; tcmalloc when installed -------------
TCMALLOC := $(wildcard /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4)
BENCH_ENV := $(if $(TCMALLOC),LD_PRELOAD=$(TCMALLOC)) OMP_NUM_THREADS=1 CARTOONIST_BENCH_DIR=$(OUT)/bench
BENCHES := tracking_overhead sampler_overhead accuracy_per_nfe pf_ode_cost peer_sampler memory noise_cost divergence_backend

bench-deps: $(STAMP)
	@# k-diffusion's own log_likelihood is the Q4 baseline; --no-deps keeps torchvision (and a
	@# CUDA torch) out.
	@# (found, not imported: k_diffusion's __init__ needs packages --no-deps leaves out)
	@$(PY) -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('k_diffusion') and u.find_spec('torchsde')))" || \
	  $(PIP) install -q --no-deps k-diffusion==0.1.1.post1 torchsde==0.2.6 trampoline==0.1.2

bench: bench-deps $(OUT)/train/fig4_digits_elbo/DONE ## Every benchmark incl. make test/demo/figures timings (~45 min) → outputs/bench/
	@for b in $(BENCHES) end_to_end; do $(BENCH_ENV) $(PY) -m benchmarks.$$b || exit 1; done

bench-quick: bench-deps ## The benchmarks at small sizes (a few minutes on 2 cores) → outputs/bench/
	@for b in $(BENCHES); do $(BENCH_ENV) $(PY) -m benchmarks.$$b --quick || exit 1; done

gpu-check: $(STAMP) bench-deps ## On a CUDA machine: CPU-vs-CUDA tests + Q1/Q2/Q4/Q7/Q8/Q9 at GPU sizes (~3 min without Q4/Q8, not yet timed with them) → outputs/bench/*_cuda.json; skips without CUDA
	CARTOONIST_BENCH_DIR=$(OUT)/bench PY=$(PY) bash benchmarks/gpu_check.sh

test: $(STAMP) ## Run the fast test suite (~10 min on 2 cores)
	$(PY) -m pytest -q -m "not slow and not long"

test-slow: $(STAMP) ## Run only the slow numerical checks
	$(PY) -m pytest -q -m "slow and not long"

test-all: $(STAMP) ## Run every test, slow ones included
	$(PY) -m pytest -q

clean: ## Remove caches (keeps .venv and outputs/)
	rm -rf .pytest_cache build src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

clean-outputs: ## Delete outputs/ (asks first)
	@read -p "delete everything under outputs/? [y/N] " a && [ "$$a" = y ] && rm -rf outputs/* || true


.PHONY: bench bench-deps bench-quick gpu-check
.PHONY: help install demo smoke fig1_hd_samples fig3_tracking fig5_mode_tracking hd_threshold \
	png_size hd_families fig4_r0_ode_elbo fig-models figures smoke-figures train-digits sync-wandb test test-slow test-all clean clean-outputs
