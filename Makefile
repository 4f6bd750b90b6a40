# The whole set-up on a fresh machine is `make demo` or `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.zss-installed

.PHONY: demo test install clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: it comes from this machine's disk (a CUDA build that runs on CPU)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/zss demo --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest tests

bench: $(STAMP)  # one headline table for this machine (--quick sizes without CUDA) -> benchmarks/results/<host>.json
	$(BIN)/python benchmarks/headline.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo_out
