"""Training data: parcels on rasters (:mod:`.parcels`, :mod:`.tiles`), image/mask folders
(:mod:`.folder`), all as :class:`TrainingData` of tile datasets (:mod:`.dataset`).

Only the light dataset interface is imported here; the GIS modules load geopandas.
"""

from rs_reasoner_training.data.dataset import (
    IGNORE_INDEX,
    ArraySource,
    TileDataset,
    TileRef,
    TileSample,
    TrainingData,
    grid_refs,
)

__all__ = [
    "IGNORE_INDEX",
    "ArraySource",
    "TileDataset",
    "TileRef",
    "TileSample",
    "TrainingData",
    "grid_refs",
]
