# Deep Learning Lab — the two commands of the README.
#   make run    create .venv, install, serve the lab on http://localhost:8501
#   make test   install what the tests need (Debian's chromium too) and run the whole suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run serve-class test lint format bench bench-budget bench-live bench-class gpu-check lessons browser clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch and torchvision as a matched pair first: other pairings fail to import
	$(PY) -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1" || \
	  $(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m streamlit run app.py --server.port 8501

# A class on several server processes: a Ray head, REPLICAS Streamlit replicas on the Ray
# backend, Debian's nginx in front on LISTEN (README, hosting)
REPLICAS ?= 2
LISTEN ?= 0.0.0.0:8080
serve-class: $(STAMP) browser
	$(PY) deploy/serve_class.py --replicas $(REPLICAS) --listen $(LISTEN)

browser:
	@# Playwright drives Debian's chromium (no browser download); emoji font for the icons;
	@# Debian's nginx for the tests that host the lab behind a proxy (deploy/nginx/)
	@{ test -x /usr/bin/chromium && test -x /usr/sbin/nginx && dpkg -s fonts-noto-color-emoji >/dev/null 2>&1; } || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium fonts-noto-color-emoji nginx; }

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test: $(STAMP) browser lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m bench.speed
	$(PY) -m bench.drawing

bench-budget: $(STAMP)
	$(PY) -m bench.budget

bench-live: $(STAMP) browser
	$(PY) -m bench.live

# A simulated class of 8, 32 and 64 learners speaking Streamlit's protocol (no browsers), on one
# replica and on two replicas + Ray behind nginx (SETUPS=one,ray,cluster adds the two replicas
# joining a Ray cluster of a head and a node, as across machines)
SETUPS ?= one,ray
bench-class: $(STAMP) browser
	$(PY) -m bench.classroom --setups $(SETUPS)

# On a machine with an NVIDIA GPU: every chapter on CUDA through the workers, a real CUDA
# out-of-memory error, the speed bench and a class of 8 and 32 on the playground, batched
# against separate runs, on the GPU (a few minutes; `... -m bench.gpu_check 1 2 3 5` picks steps).
gpu-check: $(STAMP)
	DLLAB_DEVICE=cuda $(PY) -m bench.gpu_check

lessons: $(STAMP)
	$(PY) -m pytest -m lesson --seeds 0,1,2 --lesson-table

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache artifacts
