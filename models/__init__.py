"""Models: hyperparameters, Keras networks, tf.data input, training, bundles, generation and evaluation.

Never imports Prefect or Beam. TensorFlow is imported only by the modules that need it, so the data plane
and the CLI's argument parsing stay light.
"""
