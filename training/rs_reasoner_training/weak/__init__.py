"""Weak labels from land-cover maps the analyst already has (ESA WorldCover, Dynamic
World, CORINE, national products).

* :mod:`.legends` - built-in product legends (code -> class name, colours);
* :mod:`.sources` - reading a product onto the training grid (nearest neighbour), its
  legend from the raster, a sidecar QML/CSV or a built-in one; continuous bands refused;
* :mod:`.mapping` - product classes -> the user's classes (CSV file or same names);
* :mod:`.agreement` - per-pixel label and confidence from several products, their
  per-class reliability against the user's parcels, boundary down-weighting, kappa report;
* :mod:`.training` - weak labels as an extra labelled source of parcel training data.
"""
