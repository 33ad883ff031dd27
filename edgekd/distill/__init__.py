"""Distillation: losses (``edgekd.distill.losses.LOSSES``) and the training loops
(``edgekd.distill.train``: ``train_supervised``, ``distill``, ``evaluate_model``).

Nothing is imported here, so ``import edgekd.distill`` stays free of torch.
"""
