"""Label rasters → georeferenced polygons, and writing them out (files, GeoJSON, previews)."""

from rs_reasoner.vector.preview import render_preview
from rs_reasoner.vector.vectorize import reproject, vectorize
from rs_reasoner.vector.writers import check_output_path, to_geojson_dict, write_vector

__all__ = [
    "check_output_path",
    "render_preview",
    "reproject",
    "to_geojson_dict",
    "vectorize",
    "write_vector",
]
