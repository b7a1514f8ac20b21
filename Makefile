# `make demo`: set up .venv, then train, evaluate and predict on built-in synthetic shapes (CPU).
# `make test`: set up .venv, then run the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,onnx]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/maskrcnn demo --output runs/demo

clean:
	rm -rf runs build dist src/*.egg-info .pytest_cache
