"""Networks a trained checkpoint is rebuilt into, one per module (torch; nothing heavy is
imported here).

* :mod:`.unet` - the from-scratch U-Net.
* :mod:`.rs_zeroseg_classes` - RS-ZeroSeg with a fixed list of the user's classes.
* :mod:`.build` - ``build_model(spec)``: the architecture named in a checkpoint's spec.
* :mod:`.checkpoint` - reading training checkpoints and ``load_trained_model``.
* :mod:`.pixel_features` and :mod:`.classical` - the classical learner (LightGBM over
  per-pixel features; no torch) and its ``classical.json`` file.

The training package builds and trains these; the backend serves them. Neither the
models nor the backend import the training package.
"""
