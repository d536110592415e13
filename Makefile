# The two set-up commands of the README: `make demo` (main job) and `make test` (tests).
# torch is pinned to the CPU build that this kind of machine has on disk; an open range
# would pull several GB of CUDA packages.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-0.1
DEMO ?= outputs/demo

.PHONY: install test demo clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest

demo: install
	bash scripts/demo.sh $(DEMO)

clean-demo:
	rm -rf $(DEMO)
