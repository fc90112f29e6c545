# One-command entry points. `make demo` and `make test` set up what is missing first.
SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
ACTIVATE := source $(ROOT)/scripts/activate.sh
PYTEST_ARGS ?=

.PHONY: setup test lint demo bench train clean

setup:
	@bash scripts/setup.sh

test: setup
	@$(ACTIVATE) && cd $(ROOT) && python -m pytest $(PYTEST_ARGS)

lint: setup
	@$(ACTIVATE) && ruff format --check . && ruff check .

demo: setup
	@$(ACTIVATE) && python scripts/demo.py --out demo_out

bench: setup
	@$(ACTIVATE) && python scripts/bench.py --out bench/results.json

clean:
	rm -rf .ws .setup-logs demo_out bench/results.json
