"""Pretrained learned optimizers shipped with the package (``phys_l2o.optim.from_pretrained``).

``manifest.json`` records, for each, the command, the commit, the seed, the validation loss
and its rows of the test tables; ``python -m phys_l2o.pretrained.pack`` makes the files from
the output folders of ``phys-l2o reproduce``.
"""
