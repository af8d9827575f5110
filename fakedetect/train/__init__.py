"""Training: the loop (trainer), what the recipe builds (optim, normalization), several processes
(distributed) and the TensorBoard view (tensorboard_log)."""
