"""Distillation: losses and training loops.

* ``losses.LOSSES`` logit losses (kd, ce, rkl, js, dkd, nkd, dist) and
  ``feature_losses.FEATURE_LOSSES`` feature losses (fitnet, at, rkd, ofa): one namespace
  (a name is refused by both once either holds it); every loss may read the training
  ``losses.Progress`` (DKD's warm-up does);
* ``features.FeatureTaps`` forward hooks by module path;
* ``config`` the typed settings (``TrainConfig``, ``KDConfig``, ``LossTerm``);
* ``objective.DistillObjective`` the weighted sum of terms, with projectors;
* ``loop`` the shared loop (AMP, EMA, early stop, exact resume via ``state``, DDP via
  ``distributed``, progress bar and TensorBoard via ``reporting``); ``train`` the public
  entry points ``train_supervised``, ``distill``, ``evaluate_model``;
* ``augment`` seed-pure IQ augmentation views; ``teacher_cache`` the on-disk teacher-logit
  cache (fp16 or top-k, one entry per view) that epochs, runs and students share.

Nothing is imported here, so ``import edgekd.distill`` stays free of torch.
"""
