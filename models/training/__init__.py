"""Training: tf.data input from the dataset's shards, the training loop, and the run directory."""
