"""The learning stage: graphs, the T-BOTAN network, its losses, training and inference.

- :mod:`~tbotan.learning.graphs`: dataset files → graph batches (edge features, variants).
- :mod:`~tbotan.learning.model`: the T-BOTAN network (encoders, message passing, heads).
- :mod:`~tbotan.learning.losses`: L_MSE, L_Var, L_Corr and their weights.
- :mod:`~tbotan.learning.training`: the Trainer (``tbotan train``).
- :mod:`~tbotan.learning.feeder`: the training's graphs, cached on the host or the device.
- :mod:`~tbotan.learning.checkpoint`: ``checkpoint.pt`` (writing, compatibility, resuming).
- :mod:`~tbotan.learning.global_refit`: the global head refitted on the final trunk.
- :mod:`~tbotan.learning.inference`: running a trained model (``tbotan predict``).
- :mod:`~tbotan.learning.baselines`: the ridge baseline on local structure.
"""
