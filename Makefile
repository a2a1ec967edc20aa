# Two commands: `make demo` (set up + run the main job) and `make test` (set up + run the tests).
# The set-up creates .venv when absent, installs the CPU build of torch first (pinned, so pip never
# pulls a CUDA build on a CPU machine), then this package, and the real Fashion-MNIST from Debian.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
FMNIST_DIR := /usr/share/datasets/fashion-mnist
CHROMIUM := /usr/bin/chromium
DEMO_OUT ?= runs/quick

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed $(FMNIST_DIR)/train-images-idx3-ubyte.gz

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# The real, offline dataset of the demo and the tests.
$(FMNIST_DIR)/train-images-idx3-ubyte.gz:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST is missing from $(FMNIST_DIR) and apt-get is not usable here (needs root)."; \
		echo "Run 'sudo apt-get install -y dataset-fashion-mnist', or download the four IDX files and pass --data-dir."; \
		exit 1; \
	fi

demo: setup
	$(BIN)/landscape reproduce --preset quick --out $(DEMO_OUT)

test: setup $(CHROMIUM)
	$(BIN)/python -m pytest

# The browser the report.html test loads the page in (tests/landscape/report/test_html.py); without it the
# test is skipped, except where CI is set, where it must run.
$(CHROMIUM):
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq chromium; \
	else \
		echo "Chromium is missing and apt-get is not usable here (needs root): the report.html browser test is skipped"; \
		echo "outside CI. Run 'sudo apt-get install -y chromium' to run it."; \
	fi

# Benchmarks against the peers (minutes; not part of the tests). Outputs go to bench/results/.
bench: setup
	$(BIN)/python bench/bench_train.py --device cpu --rounds 24 --out bench/results/train-cpu.txt
	$(BIN)/python bench/bench_surface.py --device cpu --samples 1000 --out bench/results/surface-cpu.txt
	$(BIN)/python bench/bench_hessian.py --device cpu --samples 256

clean:
	rm -rf $(VENV) runs .pytest_cache
