"""The built-in land-cover legends, for the training package's users: they live in
:mod:`rs_reasoner.landcover.legends` (segmentation reads products too)."""

from rs_reasoner.landcover.legends import LEGENDS, Legend, legend_by_colours, legend_named

__all__ = ["LEGENDS", "Legend", "legend_by_colours", "legend_named"]
