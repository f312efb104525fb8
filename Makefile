# Everyday commands. Each one creates the virtualenv and installs what it needs first.
#   make demo   run the exporter against a simulated account (no AWS account needed)
#   make test   run the whole test suite
#   make test-fast   run the unit tests only (pytest -m unit), in well under a minute
#   make test-client-versions   the unit tests under each prometheus_client of CLIENT_VERSIONS
#   make lint   ruff (check and format), mypy, and the import contracts of the layers
#   make image-check   build deploy/Dockerfile on a Debian base and run the images (root, buildah)
#   make package-check   build the sdist and wheel, twine check them, run --version from the wheel

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LISTEN ?= 127.0.0.1:10071

.PHONY: demo test test-fast test-client-versions lint check image-check package-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-demo

demo: $(VENV)/.installed-demo
	$(BIN)/sagemaker-tuning-exporter --demo --web.listen-address $(LISTEN)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

# The markers are given in tests/conftest.py, from what each test uses.
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m unit

# exporter/metrics/exposition.py leans on prometheus_client internals: pyproject.toml bounds its
# version to the releases this passes on (see CONTRIBUTING.md).
CLIENT_VERSIONS ?= 0.20.0 0.26.0
test-client-versions: $(VENV)/.installed-test
	for version in $(CLIENT_VERSIONS); do \
		$(BIN)/python -m pip install --quiet --no-deps --target .client-versions/$$version \
			prometheus_client==$$version && \
		PYTHONPATH=.client-versions/$$version $(BIN)/python -m pytest -q -m unit -p no:cacheprovider \
			|| exit 1; \
	done

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

check: lint test

# No registry needed: the base image is made with debootstrap (see deploy/README.md).
image-check:
	deploy/image/build-and-check.sh

package-check: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q tests/test_package.py

# The PrometheusRule of deploy/kubernetes carries the groups of the Prometheus rule file.
deploy/kubernetes/prometheusrule.yaml: deploy/prometheus/rules/sagemaker-tuning.rules.yml $(VENV)/.installed-test
	$(BIN)/python -m tests.kustomize

clean:
	rm -rf $(VENV) .client-versions build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
