"""GRPO fine-tuning of the reasoning prompter (Think2Seg-RS) on the user's examples.

Modules, one job each: :mod:`.examples` (examples from a polygon layer over a raster or an
EarthReason-style folder, spatial hold-out), :mod:`.reward` (mask IoU through the frozen
SAM), :mod:`.policy` (the serving prompt, group sampling, token log-probabilities),
:mod:`.options` (defaults from the published run), :mod:`.loop` (the GRPO loop, resume,
time budget, cancel), :mod:`.adapter_io` (atomic adapter folders), :mod:`.api` (the entry
point the backend calls).
"""
