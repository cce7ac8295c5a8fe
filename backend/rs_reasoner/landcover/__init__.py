"""Land-cover maps the analyst already has (ESA WorldCover, Dynamic World, CORINE,
national products), read for training (weak labels) and for segmentation (fusion).

* :mod:`.legends` - built-in product legends (code -> class name, colours);
* :mod:`.products` - reading a product onto a grid (nearest neighbour), its legend from
  the raster, a sidecar QML/CSV or a built-in one; continuous bands refused;
* :mod:`.mapping` - product classes -> the user's classes (CSV file or same names);
* :mod:`.checks` - the cheap checks of products named in a request, at submission;
* :mod:`.fusion` - products as class evidence next to a trained model's scores at
  segmentation (``fuse_land_cover``); :mod:`.request` - what a segmentation request's
  ``fuse_land_cover`` needs (a trained model, its checks, the run's products).

The fusion rule itself is :mod:`rs_reasoner.models.product_fusion`.
"""

from __future__ import annotations

from rs_reasoner.errors import InvalidRequestError

#: Label of pixels a product says nothing about in the user's classes (the training
#: package's ignore index has the same value).
NO_LABEL = 255
#: File in a trained model's folder with the reports of the products it was trained with
#: as weak labels (``model.json`` copies it as ``weak_labels``).
WEAK_LABELS_FILE = "weak_labels.json"


class LandCoverError(InvalidRequestError):
    """A land-cover product, its legend or its class mapping cannot be used."""
