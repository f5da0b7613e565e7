"""Melody RNN configs, Keras model, tf.data input, training and sampling (no Prefect or Beam imports).

Not built yet: ingestion is the only stage so far.
"""
