"""RS-ZeroSeg: open-vocabulary segmentation network (dual-stream CLIP + DINOv2, MS-CAM, CARH).

Modules: :mod:`.config` (architecture/freezing config), :mod:`.model` (the network and
backbone builders), :mod:`.loss` (BCE + alignment, the paper's recipe), :mod:`.checkpoint`
(which weights a checkpoint keeps). The network is served fine-tuned on the user's classes, as
:class:`rs_reasoner.models.rs_zeroseg_classes.RSZeroSegModel`.

Nothing is imported here: the submodules load torch.
"""
