"""RS Reasoner backend: raster I/O, tiling, segmenters, vectorisation, service and CLI."""

__version__ = "0.1.0"
