# Entry points: `make demo` (run the main job on the bundled sample) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision: this pair installs from local disk here; users pick their own CUDA wheels.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: venv demo test lint clean fuzz

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==25.0.1
	$(BIN)/pip install -q $(TORCH_PINS)
	# sam2 builds from source against the torch above; its CUDA extension is optional.
	SAM2_BUILD_CUDA=0 $(BIN)/pip install -q --no-build-isolation sam2==1.1.0
	$(BIN)/pip install -q -e '.[dev,batch,reasoner]'
	touch $@

demo: venv
	$(BIN)/rs-reasoner segment resources/sample_data/neon_osbs_rgb_10cm_utm17n.tif \
		--query "trees" --model index-baseline --min-area 0.5 --simplify 0.1 \
		--out demo_output/trees.gpkg --preview demo_output/trees.png

lint: venv
	$(BIN)/ruff check backend training tests bench rs_reasoner_plugin scripts

# Backend tests in the venv, then the plugin tests in real QGIS (Debian's python3-qgis).
test: venv lint
	$(BIN)/python -m pytest
	$(MAKE) test-plugin

# The long fuzz run of the HTTP API (160 requests per operation and mode: over 5,000).
# make test runs a bounded one (20 per operation and mode).
fuzz: venv
	$(BIN)/python bench/fuzz_service.py --examples 160

clean:
	rm -rf $(VENV) demo_output .pytest_cache

# -- QGIS plugin ------------------------------------------------------------------------------
# The plugin runs in QGIS's own Python (Debian's /usr/bin/python3 with python3-qgis), never in
# the backend's venv; its tests start a real backend from $(BIN)/python.
QGIS_PYTHON ?= /usr/bin/python3

.PHONY: plugin test-plugin qgis-deps screenshot screenshots qgis-chroots
#: QGIS versions the plugin tests run on: 3.22 on this machine (Debian 12), 3.40 LTR and 3.44
#: in Debian 13 and unstable chroots built once under .qgis-chroots/ (needs root).
QGIS_VERSIONS ?= 3.22 3.40 3.44

# QGIS 3.22, GDAL bindings, Xvfb and pytest from apt (skipped when already there).
qgis-deps:
	sh scripts/install_qgis_deps.sh

# dist/rs_reasoner_plugin-<version>.zip for "Plugins > Install from ZIP".
plugin:
	$(PYTHON) scripts/build_plugin.py --out dist

test-plugin: venv qgis-deps
	sh scripts/qgis_matrix.sh $(QGIS_VERSIONS)

# Build the QGIS chroots of the matrix (once; test-plugin does it when they are missing).
qgis-chroots:
	sh scripts/qgis_matrix.sh --build-only $(QGIS_VERSIONS)

# docs/screenshot.png: QGIS main window with the dock over the sample raster and a result.
screenshot: venv qgis-deps
	xvfb-run -a -s "-screen 0 1600x1000x24" $(QGIS_PYTHON) scripts/screenshot.py --out docs/screenshot.png

# docs/screenshots/*.png: one screenshot per plugin feature (README gallery, docs/plugin.md).
screenshots: venv qgis-deps
	xvfb-run -a -s "-screen 0 1400x900x24" $(QGIS_PYTHON) scripts/screenshots.py
