"""Sums across `tf.distribute` replicas for the models' losses and metrics: one device's numbers on several.

Under `tf.distribute` each replica sees its share of the global batch; the models divide by
global counts (`global_sum`) and read metrics over every replica (`global_result`), and the
trainer asks `multi_worker` whether several hosts take part. On one device and on JAX (whose
distribution shards one global array) each is the identity.
"""

from __future__ import annotations

import keras

TENSORFLOW = keras.backend.backend() == "tensorflow"
if TENSORFLOW:
    import tensorflow as tf


def replica_context():
    """The `tf.distribute` replica context when this step runs on several replicas; None otherwise
    (one device, cross-replica code, or JAX)."""
    if TENSORFLOW and tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context():
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            return context
    return None


def global_sum(value):
    """`value` summed over the replicas of a `tf.distribute` strategy; itself on one device or on JAX.

    Under `tf.distribute` each replica sees its share of the global batch; a loss
    divided by the global token count (not the replica's) makes the replicas'
    summed gradients those of one device on the whole batch. On JAX, Keras's
    distribution API shards one global array, so sums are already global.
    """
    context = replica_context()
    if context is None:
        return value

    # Differentiable: every replica's inputs reach every replica's sum, so the gradient is
    # all-reduced too. (TensorFlow's own gradient of all_reduce fails under
    # MultiWorkerMirroredStrategy with "destinations can not be empty"; this one does not.)
    @tf.custom_gradient
    def summed(x):
        def gradient(upstream):
            return context.all_reduce(tf.distribute.ReduceOp.SUM, upstream)

        return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(x)), gradient

    return summed(value)


def multi_worker(strategy=None) -> bool:
    """Whether `strategy` (default: the current one) is a multi-worker `tf.distribute` strategy (several hosts)."""
    if not TENSORFLOW or (strategy is None and not tf.distribute.has_strategy()):
        return False
    strategy = strategy or tf.distribute.get_strategy()
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


def global_result(metric):
    """`metric.result()` over every replica's state: its variables summed across replicas first
    (Keras keeps each replica's metric state apart until the epoch is read). On one device, `result()`."""
    if replica_context() is None:
        return metric.result()
    summed = [global_sum(variable.value) for variable in metric.variables]
    with keras.StatelessScope(state_mapping=list(zip(metric.variables, summed, strict=True))):
        return metric.result()
