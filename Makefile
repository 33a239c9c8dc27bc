# The few targets people type. Everything installs into .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: demo test test-fast test-wheel lint bench browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch/torchvision: the pair CI tests (on these machines they install from local disk).
	$(BIN)/pip install -q -e '.[all]' $(TORCH_PIN)
	touch $(STAMP)

## make demo: set up, then count a bundled photo with planted lesions (writes demo-out/)
demo: $(STAMP)
	$(BIN)/lesioncount demo --out demo-out

## make test: set up, then run every test (browser tests need Debian's chromium: `make browser`), then the wheel test
test: $(STAMP) browser
	$(BIN)/python -m pytest
	$(MAKE) test-wheel

## make test-wheel: build the wheel, install it alone into a fresh venv, count a photo with it
test-wheel: $(STAMP)
	PYTHON=$(PYTHON) scripts/check_wheel.sh

## make test-fast: skip slow tests
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not browser"

## make browser: install Debian's chromium (end-to-end web tests) and poppler-utils (pdftoppm renders the PDF
## report page by page in its test); needs root and apt, and those tests skip otherwise
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/pdftoppm ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium poppler-utils >/dev/null) \
	      || echo "chromium/poppler-utils could not be installed: browser and rendered-PDF tests will skip"; \
	  else echo "no root/apt: browser and rendered-PDF tests will skip"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check lesioncount tests scripts
	$(BIN)/ruff format --check lesioncount tests scripts
	$(BIN)/mypy lesioncount

## make bench: speed of the counting core on a 4000x3000 photo (stage times, torch vs ORT fp32 vs int8)
bench: $(STAMP)
	$(BIN)/python scripts/bench_count.py

clean:
	rm -rf demo-out .pytest_cache .mypy_cache .ruff_cache
