# Entry points: `make demo` (run the main job on the bundled sample) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision: this pair installs from local disk here; users pick their own CUDA wheels.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: venv demo test lint clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==25.0.1
	$(BIN)/pip install -q $(TORCH_PINS)
	# sam2 builds from source against the torch above; its CUDA extension is optional.
	SAM2_BUILD_CUDA=0 $(BIN)/pip install -q --no-build-isolation sam2==1.1.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: venv
	$(BIN)/rs-reasoner segment resources/sample_data/neon_osbs_rgb_10cm_utm17n.tif \
		--query "trees" --model index-baseline --min-area 0.5 --simplify 0.1 \
		--out demo_output/trees.gpkg --preview demo_output/trees.png

lint: venv
	$(BIN)/ruff check backend training tests bench

test: venv lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo_output .pytest_cache
