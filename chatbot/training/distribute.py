"""Training on several devices and hosts: `tf.distribute` on TensorFlow, Keras's distribution API on JAX.

`--distribute mirrored` trains one replica per local GPU (or, with no GPU, per
logical CPU device, `--replicas N`, for testing); `--distribute multi-worker`
adds the hosts that `TF_CONFIG` names (TensorFlow's `MultiWorkerMirroredStrategy`,
as its documentation describes). Every replica sees its share of each global
batch (`WindowBatches` is the same on every worker: same corpus, same seed),
and the models divide the summed loss by the global batch's token count
(`chatbot.models.replicas.global_sum`), so the update is one device's on the
whole batch. On JAX, `mirrored` is `keras.distribution.DataParallel` over the
local devices: one global array, sharded along the batch.

Only the chief writes the model directory; the other workers restore from the
chief's backup (the model directory must be on a filesystem every worker sees,
as TensorFlow's own multi-worker checkpointing assumes) and keep their own
backups in a temporary folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from chatbot.errors import ConfigError

DISTRIBUTE_CHOICES = ("none", "mirrored", "multi-worker")


@dataclasses.dataclass(frozen=True)
class Feed:
    """What `fit` reads, made by `Placement.feed`: the training and validation data, and the
    callbacks `fit` must also be given for that data to be served in the right order."""

    train: Any
    valid: Any
    callbacks: tuple = ()


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where training runs: the backend, the strategy (TensorFlow) and this process's role.

    Immutable: a changed placement is a new one (`dataclasses.replace`)."""

    name: str  # one of DISTRIBUTE_CHOICES
    backend: str  # "tensorflow" or "jax"
    strategy: object | None = None  # a tf.distribute.Strategy, or None
    replicas: int = 1  # replicas in sync, all workers together
    is_chief: bool = True
    resuming: bool = False  # this run continues one (--resume): other workers restore from the chief's backup

    def scope(self):
        """The context in which the model and its optimizer must be built."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()  # type: ignore[attr-defined]

    def check_batch_size(self, batch_size: int) -> None:
        """Raises ConfigError when the global batch does not split evenly over the replicas."""
        if self.replicas > 1 and batch_size % self.replicas:
            raise ConfigError(f"--batch-size {batch_size} does not split over {self.replicas} replicas; choose a multiple")

    def describe(self) -> str:
        if self.name == "none":
            return f"training on one device ({self.backend})"
        role = "chief" if self.is_chief else "worker"
        return f"training on {self.replicas} replicas ({self.name}, {self.backend}); this process is the {role}"

    def feed(self, train, valid, num_turns: int, first_batch: int = 0) -> Feed:
        """What `fit` reads for the `WindowBatches` `train` and `valid`: a `tf.data` pipeline each on
        one TensorFlow device, each replica's rows of every global batch under `tf.distribute`, and
        a `keras.utils.PyDataset` of fixed-shape batches on JAX. Both serve the order of `fit`'s
        epoch (`epoch_order`, one callback for both, in the `Feed`), so a resumed run continues the shuffle.
        `first_batch`: the training data of each epoch starts at that batch (0-based), for a one-epoch
        `fit` that finishes an epoch a cut run had started (the validation data is whole)."""
        order = epoch_order()
        return Feed(self._data(train, num_turns, order, first_batch), self._data(valid, num_turns, order), (order,))

    def _data(self, batches, num_turns: int, order, first_batch: int = 0):
        if self.backend != "tensorflow":
            return batches.py_dataset(num_turns, lambda: order.epoch, first_batch)
        if self.strategy is None:
            return batches.dataset(lambda: order.epoch, first_batch)
        return replica_batches(batches, self.strategy, order, first_batch)

    def backup_dir(self, out_dir: Path) -> Path:
        """Where this process's `TrainingBackup` writes: the chief's in the model directory; another
        worker's in a temporary copy of it (restored from the chief's, written only there)."""
        backup = Path(out_dir) / "backup"
        if self.is_chief:
            return backup
        copy = Path(tempfile.mkdtemp(prefix="chatbot-worker-backup-"))
        if self.resuming and backup.exists():  # (a new run must not read what the chief is writing)
            shutil.copytree(backup, copy, dirs_exist_ok=True)
        return copy

    def any_worker(self, flag: bool) -> bool:
        """True when `flag` is true on any worker (a collective: every worker must call it at the same point)."""
        if self.strategy is None or self.name != "multi-worker":
            return flag
        import tensorflow as tf

        strategy = self.strategy
        value = strategy.run(lambda: tf.constant(1.0 if flag else 0.0))  # type: ignore[attr-defined]
        # (ReduceOp has SUM and MEAN only: a sum above 0 is a flag on some replica)
        return bool(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None).numpy() > 0)  # type: ignore[attr-defined]


def placement(name: str, replicas: int = 1) -> Placement:
    """The placement `--distribute NAME` asks for, under the current Keras backend.

    Must run before any model or TensorFlow op is created (TensorFlow fixes its
    devices, and `MultiWorkerMirroredStrategy` its cluster, at first use).

    Args:
        name: one of `DISTRIBUTE_CHOICES`.
        replicas: with `mirrored` and no GPU, split the CPU into this many logical devices (testing).
    Raises:
        ConfigError: an unknown name, `multi-worker` without `TF_CONFIG` or on JAX, or a device count
            that cannot be arranged.
    """
    import keras

    backend = keras.backend.backend()
    if name not in DISTRIBUTE_CHOICES:
        raise ConfigError(f"--distribute must be one of {', '.join(DISTRIBUTE_CHOICES)}, got {name!r}")
    if replicas < 1:
        raise ConfigError(f"--replicas must be at least 1, got {replicas}")
    if name == "none":
        return Placement(name, backend)
    if backend == "jax":
        return _jax_placement(name, replicas)
    if backend != "tensorflow":
        raise ConfigError(f"--distribute needs the tensorflow or jax backend, not KERAS_BACKEND={backend}")
    import tensorflow as tf

    if name == "multi-worker":
        _tf_config()
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        chief = bool(strategy.extended.should_checkpoint)
        return Placement(name, backend, strategy, strategy.num_replicas_in_sync, chief)
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
        except RuntimeError as exc:
            raise ConfigError(f"--replicas {replicas}: TensorFlow has already started its devices ({exc})") from exc
    devices = [d.name for d in tf.config.list_logical_devices("GPU" if gpus else "CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    return Placement(name, backend, strategy, strategy.num_replicas_in_sync, True)


def _tf_config() -> dict:
    """`TF_CONFIG`, checked: a cluster with workers and this process's task.

    Raises:
        ConfigError: unset, not JSON, or without cluster/task.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError(
            "--distribute multi-worker: TF_CONFIG is not set; set it on every host to "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": I}}'
        )
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        config["task"]["type"], config["task"]["index"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--distribute multi-worker: TF_CONFIG is not a cluster and task ({exc}); see docs/gpu.md") from exc
    if not workers:
        raise ConfigError("--distribute multi-worker: TF_CONFIG names no worker")
    return config


def _jax_placement(name: str, replicas: int) -> Placement:
    import keras

    if name == "multi-worker":
        raise ConfigError(
            "--distribute multi-worker runs on the TensorFlow backend; on JAX use mirrored (all local devices) or unset KERAS_BACKEND"
        )
    devices = keras.distribution.list_devices()
    if replicas > 1 and len(devices) < replicas:
        raise ConfigError(
            f"--replicas {replicas}: JAX sees {len(devices)} device(s); for CPU devices set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={replicas} before starting"
        )
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return Placement(name, "jax", None, len(devices), True)


def epoch_order() -> Any:
    """A Keras callback whose `epoch` is the epoch `fit` is in: the order a feed serves.

    The order follows `fit`'s epoch counter, not how often the pipeline was iterated
    (under a strategy Keras reads a first batch to build the model, then starts the
    pipeline again), so every epoch, a resumed one too, has the order an uninterrupted
    run on one device has. (Built here: keras is imported lazily.)
    """
    import keras

    class EpochOrder(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    return EpochOrder()


def replica_batches(batches, strategy, order, first_batch: int = 0):
    """Each replica's rows of every global batch from the epoch's batch `first_batch` on, as a distributed dataset for `fit`.

    Replica r of n gets rows r, r+n, r+2n, … of each global batch (padded as the
    global batch is, plus all-padding rows up to ⌈batch/n⌉, which count for nothing),
    so all replicas together see exactly what one device would.
    Each worker's pipeline yields its local replicas' shares in order; `tf.distribute`
    hands consecutive elements to the worker's replicas.
    """
    import numpy as np
    import tensorflow as tf

    total = strategy.num_replicas_in_sync
    spec = tf.TensorSpec(shape=(None, None, None), dtype=tf.int32)

    def pipeline(context):
        local = total // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def shares():
            for batch in batches.batches(order.epoch, first_batch):
                rows = -(-len(batch) // total)  # every share padded to one row count: collectives need equal shapes
                for replica in range(first, first + local):
                    share = batch[replica::total]
                    yield np.concatenate([share, np.zeros((rows - len(share), *batch.shape[1:]), batch.dtype)])

        dataset = tf.data.Dataset.from_generator(shares, output_signature=spec)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality((batches.num_batches - first_batch) * local))
        return dataset.prefetch(tf.data.AUTOTUNE)

    from chatbot.models.replicas import multi_worker

    if not multi_worker(strategy):
        # One host: global batches (rows padded to a multiple of the replicas), which tf.distribute
        # splits into equal consecutive shares, one per local device.
        def global_batches():
            for batch in batches.batches(order.epoch, first_batch):
                rows = -(-len(batch) // total) * total
                yield np.concatenate([batch, np.zeros((rows - len(batch), *batch.shape[1:]), batch.dtype)])

        dataset = tf.data.Dataset.from_generator(global_batches, output_signature=spec)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches.num_batches - first_batch)).prefetch(tf.data.AUTOTUNE)
        return strategy.experimental_distribute_dataset(dataset)
    options = tf.distribute.InputOptions(experimental_fetch_to_device=False)
    return strategy.distribute_datasets_from_function(pipeline, options)


def replica_adam(**kwargs):
    """Adam for `tf.distribute`: the replicas' gradients are summed before they are clipped.

    Keras clips each replica's gradient (`global_clipnorm`) before the optimizer sums
    them across replicas, so a clip would act on shares of the batch, not on the
    batch: the update would differ from one device's. Here the sum comes first (one
    all-reduce, as before) and the clip sees the global batch's gradient.
    """
    import keras
    import tensorflow as tf

    from chatbot.models.replicas import replica_context

    class ReplicaAdam(keras.optimizers.Adam):
        def _clip_gradients(self, grads):
            if (context := replica_context()) is not None:
                present = [tf.convert_to_tensor(g) for g in grads if g is not None]  # IndexedSlices (embeddings) dense
                summed = iter(context.all_reduce(tf.distribute.ReduceOp.SUM, present))
                grads = [None if g is None else next(summed) for g in grads]
            return super()._clip_gradients(grads)

        def _all_reduce_sum_gradients(self, grads_and_vars):
            if replica_context() is not None:
                return list(grads_and_vars)  # already summed in _clip_gradients
            return super()._all_reduce_sum_gradients(grads_and_vars)

    return ReplicaAdam(**kwargs)
