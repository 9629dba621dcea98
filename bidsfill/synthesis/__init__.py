"""Missing-contrast synthesis (cWDM, Friedrich et al. 2024) and its regression baseline.

Core layer: numpy/torch only, no Nipype, no pybids. :mod:`.normalise` is the per-contrast
intensity rule, :mod:`.model` the card and the network, :mod:`.sample` whole-volume
synthesis by overlapping crops, :mod:`.regression` the voxelwise linear baseline,
:mod:`.training` a small training loop and :mod:`.scores` the paper's Table-1 metrics.
"""
