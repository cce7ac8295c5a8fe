"""Weak labels from land-cover maps the analyst already has (ESA WorldCover, Dynamic
World, CORINE, national products).

Reading a product onto the training grid, its legend and its class mapping are the
backend's (:mod:`rs_reasoner.landcover`: segmentation fuses the same products); here:

* :mod:`.agreement` - per-pixel label and confidence from several products, their
  per-class reliability against the user's parcels, boundary down-weighting, kappa report;
* :mod:`.training` - weak labels as an extra labelled source of parcel training data,
  their reports kept in the model folder (``weak_labels.json``);
* :mod:`.legends` - the built-in legends, re-exported from the backend.
"""
