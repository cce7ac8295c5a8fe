#!/bin/sh
# Install what the QGIS plugin tests need from Debian: QGIS (Python bindings, providers,
# qgis_process), GDAL's Python bindings, numpy, Xvfb and pytest for Debian's python3.
# Idempotent: does nothing when /usr/bin/python3 already imports qgis.core and pytest.
set -eu

PY=/usr/bin/python3

have_all() {
    [ -x "$PY" ] || return 1
    "$PY" -c "import qgis.core, pytest, osgeo.gdal, numpy" >/dev/null 2>&1 || return 1
    command -v qgis_process >/dev/null 2>&1 || [ -x /usr/bin/qgis_process ] || return 1
    command -v xvfb-run >/dev/null 2>&1 || return 1
}

if have_all; then
    echo "qgis-deps: QGIS, pytest, GDAL and Xvfb already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "error: installing QGIS needs root (apt-get); run this script as root or install sudo" >&2
        exit 2
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends \
    python3-qgis qgis-providers qgis \
    python3-gdal python3-numpy python3-pytest xvfb xauth

if ! have_all; then
    echo "error: QGIS packages installed but '$PY -c \"import qgis.core, pytest\"' still fails" >&2
    exit 2
fi
echo "qgis-deps: done"
