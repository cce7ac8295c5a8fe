"""RS Reasoner fine-tuning (semi-supervised, VLM-purified pseudo-labels); see issue 6.

Entry points:

* :func:`rs_reasoner_training.api.train_on_parcels` - raster + labelled parcels ->
  checkpoints (``best.pt`` to serve, ``last.pt`` to resume); what ``rs-reasoner train``
  runs.
* :func:`rs_reasoner_training.api.train_model` - any :class:`TrainingData` (e.g.
  :func:`rs_reasoner_training.data.folder.dubai_training_data`) with the from-scratch U-Net.
* :func:`rs_reasoner_training.loop.train` - the generic loop for any model (logits
  ``(B, C, H, W)`` from images ``(B, 3, H, W)`` in [0, 1]) and loss.
* :func:`rs_reasoner_training.checkpoint.load_trained_model` - rebuild a trained model.

Modules: ``data`` (parcels, tiles and split, folders), ``augment``, ``purify`` (VLM-PP and
selection policies), ``ema``, ``metrics``, ``models``, ``checkpoint``, ``loop``, ``api``.
Nothing heavy is imported here.
"""
