"""RS-ZeroSeg: open-vocabulary segmentation network (dual-stream CLIP + DINOv2, MS-CAM, CARH).

Modules: :mod:`.config` (architecture/freezing config), :mod:`.model` (the network and
backbone builders), :mod:`.loss` (BCE + alignment, the paper's recipe), :mod:`.checkpoint`
(its own atomic, versioned checkpoints), :mod:`.segmenter` (the Segmenter over a network
and its training classes). The same network fine-tuned on the user's classes is
:class:`rs_reasoner.models.rs_zeroseg_classes.RSZeroSegModel`.

Nothing is imported here: the submodules load torch.
"""
