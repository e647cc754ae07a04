# Two entry points: `make demo` (the retraining flow on embedded defaults) and
# `make test`. Each installs what it needs once; stamps make reruns instant.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.zhasr-installed
SYS_STAMP := .zhasr-system-packages
SYS_PACKAGES := espeak-ng sox libsndfile1

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false

.PHONY: install docs demo detector test test-slow test-infra test-labelstudio bench gpu-tokenizer bench-transcribe bench-serve ui prefect-ui labelstudio serve serve-mlflow monitor repro clean-state

install: $(STAMP) $(SYS_STAMP)

# System packages: the synthetic speech generator needs espeak-ng and sox.
$(SYS_STAMP):
	@missing=""; for p in $(SYS_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@touch $@

# torch is installed first, at its pinned version, so that no package of the lock pulls another one; pip takes
# the CPU build where its index offers one (PIP_EXTRA_INDEX_URL), else PyPI's wheel with CUDA's libraries.
$(STAMP): pyproject.toml requirements/lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements/lock.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

demo: install
	$(VENV)/bin/zhasr demo

# The number detector transcribe.detector can name (models/detector/ct2-int8, or models:/zhasr-detector@champion
# once a person approves its version), checked before it replaces the last one: 11-30 min on 2 CPU cores
# (measured 11-18 min; its training alone took 17 min on a slower machine).
detector: install
	$(VENV)/bin/zhasr detector

# The documentation as a site in site/, built offline: the README is its home page.
docs: install
	$(PY) -m pip install -q -r requirements/docs.txt
	sed -e 's|](docs/|](|g' -e 's|\[ARCHITECTURE.md\](ARCHITECTURE.md)|ARCHITECTURE.md|g' README.md > docs/index.md
	$(PY) -m mkdocs build --strict --quiet
	@echo "site/index.html"

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

# The service beside Debian's redis-server (two replicas, one limit) and prometheus (scraping it).
INFRA_PACKAGES := redis-server prometheus
test-infra: install
	@missing=""; for p in $(INFRA_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	$(PY) -m pytest -q -m infra

repro: install
	PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/dvc repro

bench: install
	$(PY) bench/train.py

# What bench/gpu_check.sh needs to build random models on a CUDA machine without the 145 MB whisper-base
# wheels: the tokenizer and CTranslate2 config (2 MB), into bench/tokenizer/ (git-ignored; carry it there).
gpu-tokenizer: install
	$(PY) -c "import shutil, pathlib; from zhasr.model.tiny import tokenizer_files; f = tokenizer_files(); \
	  d = pathlib.Path('bench/tokenizer'); d.mkdir(exist_ok=True); [shutil.copy(p, d) for p in (f.tokenizer, f.config)]"

# Whole-call speed, memory and CER of each runtime beside faster-whisper's pipelines (run the demo first).
bench-transcribe: install
	$(PY) bench/transcribe.py

ui: install
	$(VENV)/bin/zhasr ui

# Concurrency 1/4/16 against the service, beside the engine alone and a one-request-at-a-time server.
bench-serve: install
	$(PY) bench/serve.py

# The champion behind the OpenAI-compatible API on serve.host:serve.port (add a key first:
# .venv/bin/zhasr serve-keys add NAME).
serve: install
	$(VENV)/bin/zhasr serve

# Prometheus on monitoring/prometheus.yml (Debian's package, installed on first use), UI on 127.0.0.1:9090.
monitor:
	@command -v prometheus >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq prometheus >/dev/null; }
	prometheus --config.file=monitoring/prometheus.yml --storage.tsdb.path=.prometheus --web.listen-address=127.0.0.1:9090

# The registered champion through MLflow's scoring server (pyfunc; base64 audio in a dataframe).
serve-mlflow: install
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(abspath mlflow/mlflow.db)} \
	PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/mlflow models serve -m models:/zhasr-whisper@champion \
	  --env-manager local --host 127.0.0.1 --port 5001 --workers 1

# Label Studio 1.23 in its own virtual environment (its pins are not the project's) on 127.0.0.1:$(LS_PORT),
# sqlite under .labelstudio/. The first start creates the user zhasr@localhost with a password and an API
# token made here (.labelstudio/password, .labelstudio/token); `zhasr label` reads the token.
LS_VENV := .venv-labelstudio
LS_STAMP := $(LS_VENV)/.zhasr-installed
LS_HOME := .labelstudio
LS_PORT ?= 8089
# `zhasr label push` keeps each call's audio here (paths.labelling); Label Studio serves it to signed-in users
# of the project as local files, so no task carries a URL with a secret. SSRF protection is off so that its
# webhooks may reach the transcription service on this machine (it listens on loopback only).
LS_MEDIA := data/labelling

$(LS_STAMP): requirements/labelstudio.txt
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q --upgrade pip
	$(LS_VENV)/bin/python -m pip install -q -r requirements/labelstudio.txt
	@touch $@

labelstudio: $(LS_STAMP)
	@mkdir -p $(LS_HOME) $(LS_MEDIA) && chmod 700 $(LS_HOME)
	@test -s $(LS_HOME)/token || $(PYTHON) -c "import secrets; print(secrets.token_hex(20))" > $(LS_HOME)/token
	@test -s $(LS_HOME)/password || $(PYTHON) -c "import secrets; print(secrets.token_urlsafe(16))" > $(LS_HOME)/password
	LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=$(abspath $(LS_MEDIA)) \
	SSRF_PROTECTION_ENABLED=false \
	$(LS_VENV)/bin/label-studio start --no-browser --internal-host 127.0.0.1 --port $(LS_PORT) \
	  --data-dir $(abspath $(LS_HOME)) --username zhasr@localhost --password "$$(cat $(LS_HOME)/password)" \
	  --user-token "$$(cat $(LS_HOME)/token)" --enable-legacy-api-token

# The labelling loop against a real Label Studio (started by the test on a free loopback port).
test-labelstudio: install $(LS_STAMP)
	$(PY) -m pytest -q -m labelstudio

# The demo's flow runs live in .prefect/ (the temporary server's database): this serves them.
prefect-ui: install
	PREFECT_HOME=$(abspath .prefect) $(VENV)/bin/prefect server start --host 127.0.0.1 --port 4200

clean-state:
	rm -rf mlflow/mlflow.db mlflow/artifacts .prefect data runs models reports serve .prometheus cache
