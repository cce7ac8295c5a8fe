"""Batch segmentation of whole raster collections: planned in work units, resumable, run
on this machine's worker processes or on a Ray cluster, with seams merged once.

Modules, one job each: :mod:`inputs` (rasters and mosaics), :mod:`units` (work-unit
planning), :mod:`manifest` (progress on disk), :mod:`worker` (one unit),
:mod:`seams` (objects cut by unit edges), :mod:`writer` (parts and the merged layer),
:mod:`executor_local` and :mod:`executor_ray` (where units run), :mod:`progress`
(bar and figures), :mod:`run` (the whole batch), :mod:`cli` (``rs-reasoner batch``).
"""
