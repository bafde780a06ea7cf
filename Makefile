# terradiff: the two commands of the README are `make demo` and `make test`.
# Both create .venv (CPU build of torch 2.13.0) and install terradiff into it first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.terradiff-installed
DEMO   := outputs/demo

.PHONY: setup demo sr-example carbon-example mnist-study augmentation-study conditional-study change-study carbon-loco-study carbon-kd-study seed-study sr-settings-study sr-ensemble-study sr-detail-study feature-distance-study perceptual-loss-study distill-teacher-study temporal-study temporal-dates-study test lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/cpu.txt
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Main job: train a small generator on the bundled real AID sample (a few minutes on 2 CPU cores;
# --overwrite replaces the run of a previous `make demo`), then sample with 20-step DDIM and
# compute FID/KID with terradiff's offline AID encoder.
demo: setup
	$(BIN)/terradiff train configs/demo_aid.yaml --output-dir $(DEMO)/run --overwrite
	$(BIN)/terradiff sample $(DEMO)/run --n 64 --sampler ddim --steps 20 \
		--out $(DEMO)/samples_ddim20.png --chain $(DEMO)/chain.png
	$(BIN)/terradiff evaluate $(DEMO)/run --out $(DEMO)/metrics.json
	$(BIN)/python scripts/plot_losses.py $(DEMO)/run --out $(DEMO)/loss.png
	@echo
	@echo "Outputs in $(DEMO)/: samples_ddim20.png (grid), chain.png (denoising chain),"
	@echo "metrics.json (FID/KID, precision/recall), loss.png (training loss), run/ (checkpoints, TensorBoard)."

# Super-resolution example: train a x4 model on the bundled AID sample (a few minutes on 2 CPU
# cores), evaluate it on the held-out scenes against bicubic, then super-resolve the bundled
# real NAIP tile (a GeoTIFF with CRS) x4 to a georeferenced GeoTIFF.
SR := outputs/sr-example
sr-example: setup
	$(BIN)/terradiff train configs/sr/sample_regression_x4.yaml --output-dir $(SR)/run --overwrite
	$(BIN)/terradiff evaluate $(SR)/run --n 30 --out $(SR)/metrics.json
	$(BIN)/terradiff super-resolve data/samples/naip/m_4709963_se_14_1_20190904.tif \
		$(SR)/naip_x4.tif --model $(SR)/run --bands 1,2,3 --overwrite
	@echo "Outputs in $(SR)/: metrics.json (PSNR/SSIM vs bicubic), naip_x4.tif (1.25 m pixels)."

# Carbon example: train a small IIDM on the bundled prepared BioMassters chips (a few minutes on 2
# CPU cores), then map the held-out chip with terradiff estimate (mean and ensemble std bands).
CARBON := outputs/carbon-example
carbon-example: setup
	$(BIN)/terradiff train configs/carbon/sample_iidm.yaml --output-dir $(CARBON)/run --overwrite
	$(BIN)/terradiff estimate --model $(CARBON)/run --image data/samples/biomassters/000aa810/image.tif \
		--mask data/samples/biomassters/000aa810/mask.tif --out $(CARBON)/000aa810_carbon.tif \
		--ensemble 4 --steps 10 --tile 64 --overwrite
	$(BIN)/terradiff evaluate $(CARBON)/run --split test --ensemble 4 --steps 10 \
		--out $(CARBON)/test_metrics.json
	@echo "Output: $(CARBON)/000aa810_carbon.tif (band 1 carbon Mg C/ha, band 2 ensemble std)."

# Studies that run one process on both cores spin idle OpenMP threads 10,000 iterations before
# they sleep, as the terradiff command does (terradiff.runtime.SPIN_COUNT: `make demo`'s training
# ran 1.4-1.5x faster that way than with PASSIVE alone, BENCHMARKS.md; not timed on the studies
# themselves); the two-process studies run one thread each and keep PASSIVE.
ONE_JOB_OMP := OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=10000

change-study: setup  # issue 17 change detection (two generators, 9 heads, thresholds from the training tiles); ~2.5 h on 2 CPU cores, resumes
	$(ONE_JOB_OMP) $(BIN)/python scripts/change_study.py --work outputs/change \
		--out reports/change --calibrate

temporal-study: setup  # issue 17 before -> after on a held-out region; about 2 hours on 2 CPU cores, resumes
	$(ONE_JOB_OMP) $(BIN)/python scripts/temporal_study.py --work outputs/temporal \
		--out reports/temporal --steps 2000 --generator-steps 2000 --max-windows 640

temporal-dates-study: setup  # issue 17 before -> after for held-out months; ~1.5 hours on 1 core, resumes
	$(ONE_JOB_OMP) $(BIN)/python scripts/temporal_dates_study.py \
		--work outputs/temporal_dates --out reports/temporal_dates --steps 2000 \
		--generator-steps 2000 --max-windows 640

carbon-loco-study: setup  # issue 14 carbon leave-one-chip-out; ~2.5-3 hours on 2 CPU cores, resumes
	$(ONE_JOB_OMP) $(BIN)/python scripts/carbon_loco_study.py --work outputs/carbon_loco \
		--out reports/carbon_loco

carbon-kd-study: setup  # carbon IIDM compression, setting chosen on validation; ~1.2 h on 2 CPU cores, resumes
	$(ONE_JOB_OMP) $(BIN)/python scripts/carbon_kd_study.py --work outputs/carbon_kd \
		--out reports/carbon_kd

seed-study: setup  # issue 14 SR/distillation rows over 3 training seeds; ~1 hour on 2 cores, resumes
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/seed_study.py --only teacher \
		student student_mse student_none student_no_fs student_no_ds student_no_ga & \
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/seed_study.py --only regression \
		eurosat; wait
	$(BIN)/python scripts/seed_study.py --report-only

sr-settings-study: setup  # SR3/implicit with a residual target: val choice, then 3 seeds; ~100 min, 2 cores
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/sr_settings_study.py \
		--phase val --only image residual_0.25 image_x0 & \
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/sr_settings_study.py \
		--phase val --only residual_0.5 residual_0.5_x0; wait
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/sr_settings_study.py \
		--phase test --models sr3 & \
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/sr_settings_study.py \
		--phase test --models implicit; wait
	$(BIN)/python scripts/sr_settings_study.py --report-only

sr-ensemble-study: setup  # mean of 1-8 SR3/implicit draws vs bicubic, 3 seeds; ~2 hours on 2 cores, resumes
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/sr_ensemble_study.py \
		--models sr3 & \
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/sr_ensemble_study.py \
		--models implicit; wait
	$(BIN)/python scripts/sr_ensemble_study.py --report-only

sr-detail-study: sr-ensemble-study  # detail above the LR Nyquist vs PSNR; regression UNet 3 seeds, ~35 min more
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/sr_ensemble_study.py --refresh
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/sr_detail_study.py

feature-distance-study: setup  # the offline perceptual distance; reads the runs of seed-study and sr-settings-study; ~15 min on 2 cores
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/feature_distance_study.py \
		--models sr3 & \
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/feature_distance_study.py \
		--models regression implicit; wait
	$(BIN)/python scripts/feature_distance_study.py --report-only

perceptual-loss-study: setup  # the light SR student with the offline perceptual loss; ~80 min on 2 cores (reads outputs/distill_teacher runs when present)
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/perceptual_loss_study.py & \
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/perceptual_loss_study.py; wait
	$(BIN)/python scripts/perceptual_loss_study.py --second-encoder  # + ~8 min: the rows in encoder_b

distill-teacher-study: setup  # the light SR student distilled from the regression UNet; ~50 min on 2 cores (+~40 without outputs/seeds/runs/regression)
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/distill_teacher_study.py & \
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/distill_teacher_study.py; wait
	$(BIN)/python scripts/distill_teacher_study.py --report-only

conditional-study: setup  # issue 15 item 5; about an hour or more on 2 CPU cores, resumes
	$(ONE_JOB_OMP) $(BIN)/python scripts/conditional_study.py \
		--work outputs/conditional/aid --out reports/conditional --steps 2500 --max-minutes 70 \
		--scales 0 1 2 3 5 --n 450

augmentation-study: setup  # issue 15 item 6; hours on 2 CPU cores, resumes where it stopped
	$(ONE_JOB_OMP) $(BIN)/python scripts/augmentation_study.py --datasets aid eurosat \
		--generator-steps 1500 --work outputs/augmentation --out reports/augmentation

# MNIST benchmark of classifier-free guidance (issue 15): train the class-conditional UNet on the
# 8,000 training digits (~20 minutes on 2 CPU cores; --overwrite replaces a previous run), then
# train the digit classifier and measure accuracy, FID and KID per guidance scale; writes
# reports/mnist/ (README.md, results.json, PNG figures).
mnist-study: setup
	$(BIN)/terradiff train configs/conditional/mnist.yaml --output-dir outputs/mnist/run --overwrite
	$(BIN)/python scripts/mnist_guidance_study.py --run outputs/mnist/run \
		--classifier outputs/mnist/classifier --out reports/mnist --redo

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python benchmarks/bench_unet.py

clean:
	rm -rf outputs runs .pytest_cache .ruff_cache
