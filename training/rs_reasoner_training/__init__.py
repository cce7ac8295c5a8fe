"""RS Reasoner fine-tuning (semi-supervised, VLM-purified pseudo-labels).

Entry points:

* :func:`rs_reasoner_training.api.train_on_parcels` - raster + labelled parcels ->
  checkpoints (``best.pt`` to serve, ``last.pt`` to resume); what ``rs-reasoner train``
  runs.
* :func:`rs_reasoner_training.api.train_model` - any :class:`TrainingData` (e.g.
  :func:`rs_reasoner_training.data.folder.dubai_training_data`); ``model`` "rs-zeroseg"
  (open-vocabulary model with the user's classes), "unet" (from scratch) or "auto";
  ``verifier`` none / clip-openvocab / a checkpoint / two-stage "supervised".
* :func:`rs_reasoner_training.loop.train` - the generic loop for any model (logits
  ``(B, C, H, W)`` from images ``(B, 3, H, W)`` in [0, 1]) and loss.
* ``rs_reasoner_training.api:TRAINER`` - this package as the backend's trainer (the
  ``rs_reasoner.trainers`` entry point; the backend never imports this package).

The networks (U-Net, RS-ZeroSeg with the user's classes), ``build_model`` and
``load_trained_model`` live in the backend (:mod:`rs_reasoner.models`), which serves what
is trained here.

Modules: ``data`` (parcels, tiles and split, folders), ``augment``, ``purify`` (VLM-PP and
selection policies), ``verifiers`` (who verifies: open-vocabulary segmenters, checkpoints),
``ema``, ``metrics``, ``models`` (RS-ZeroSeg backbones, crop size), ``checkpoint``
(writing), ``config`` (training options), ``losses``, ``evaluation`` (held-out scores),
``devices``, ``loop`` (the run as named steps: resume, train epoch, evaluate, record,
save), ``api``.
Nothing heavy is imported here.
"""
