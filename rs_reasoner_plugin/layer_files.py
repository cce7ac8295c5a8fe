"""Whether a QGIS layer is backed by a plain local file the backend can open by path."""

from __future__ import annotations

import os
from typing import Any

from qgis.core import QgsMapLayer, QgsProviderRegistry


def local_source(layer: QgsMapLayer | None, provider: str) -> tuple[str, dict[str, Any]] | None:
    """``(absolute path, decoded source URI)`` of a layer on a regular local file, else None.

    /vsi* paths (in memory, zip, curl), other providers (WMS, XYZ, memory, ...) and invalid
    layers do not qualify.

    Args:
        layer: The layer.
        provider: The data provider it must use (``"gdal"`` for rasters, ``"ogr"`` for
            vectors).

    Returns:
        The file and the URI parts (``layerName``, ``layerId``, ...), or None.
    """
    if layer is None or not layer.isValid() or layer.providerType() != provider:
        return None
    parts = QgsProviderRegistry.instance().decodeUri(provider, layer.source())
    path = str(parts.get("path") or "")
    if not path or path.startswith("/vsi") or parts.get("vsiPrefix") or not os.path.isfile(path):
        return None
    return os.path.abspath(path), parts
