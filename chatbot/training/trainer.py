"""`chatbot train`: corpus → tokenizer → windows → Keras `fit` → model directory."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chatbot.config import ModelConfig, TrainConfig, corpus_label
from chatbot.corpus import Problems, ReadOptions, Source, resolve
from chatbot.corpus.tokens import cached_tokenizer, tokenize_source, train_texts
from chatbot.errors import CheckpointError, CorpusError
from chatbot.inference.checkpoint import CURVES_FILENAME, METRICS_FILENAME, MODEL_FILENAME, load_checkpoint, read_config, write_config
from chatbot.paths import cache_dir
from chatbot.text.tokenizer import FILENAME as TOKENIZER_FILENAME
from chatbot.text.tokenizer import Tokenizer

if TYPE_CHECKING:
    from chatbot.inference.checkpoint import Checkpoint
    from chatbot.training.data import WindowBatches
    from chatbot.training.distribute import Placement

# Layers `--init-from` copies: (layer in the new model, layer in the source model).
INIT_FROM_LAYERS = (
    ("embedding", "embedding"),
    ("utterance_encoder", "utterance_encoder"),
    ("context_encoder", "context_encoder"),
    ("encoder", "utterance_encoder"),  # a Seq2Seq encoder starts from an HRED utterance encoder
    ("encoder", "encoder"),
)
# Copied too when both models are hierarchical (HRED, HRAN, VHRED): Serban et al. (2017) start VHRED
# from a trained HRED's encoders and decoder.
HIERARCHICAL_LAYERS = (
    ("decoder", "decoder"),
    ("output_projection", "output_projection"),
    ("context_centering", "context_centering"),
)
INHERITED_SIZES = (
    "vocabulary_size",
    "decoder_dim",
    "tie_embeddings",
    "center_context",
    "embedding_dim",
    "scale_embeddings",
    "hidden_dim",
    "context_dim",
    "cell",
    "bidirectional",
    "max_utterance_length",
)


def inherit_sizes(config: ModelConfig, source: ModelConfig) -> ModelConfig:
    """The sizes of the copied layers come from the source model; the rest from `config`."""
    return dataclasses.replace(config, **{name: getattr(source, name) for name in INHERITED_SIZES})


def fitted_weights(target, origin) -> list:
    """`origin`'s weights shaped for `target`: equal shapes are copied; a kernel with more input rows in
    `target` (VHRED's decoder and initial state also read z) gets `origin`'s rows first and zeros after, so
    the new inputs start unused and the layer computes what `origin` did.

    Raises:
        ValueError: a weight that fits neither way.
    """
    fitted = []
    for mine, theirs in zip(target.get_weights(), origin.get_weights(), strict=True):
        if mine.shape == theirs.shape:
            fitted.append(theirs)
        elif mine.ndim == 2 and mine.shape[1] == theirs.shape[1] and mine.shape[0] > theirs.shape[0]:
            fitted.append(np.concatenate([theirs, np.zeros((mine.shape[0] - theirs.shape[0], mine.shape[1]), theirs.dtype)]))
        else:
            raise ValueError(f"weight of shape {theirs.shape} cannot start one of shape {mine.shape}")
    return fitted


def copy_encoder_weights(model, source) -> list[str]:
    """Copy the embedding and encoders of `source` into `model`, and between hierarchical models (HRED,
    HRAN, VHRED) the decoder and output projection too (Serban et al. 2017 start VHRED from HRED).

    Returns:
        names of the layers copied.
    Raises:
        CheckpointError: the source shares no layer with the model, or a shared layer does not fit.
    """
    copied = []
    hierarchical = getattr(model, "context_encoder", None) is not None and getattr(source, "context_encoder", None) is not None
    for target_name, source_name in INIT_FROM_LAYERS + (HIERARCHICAL_LAYERS if hierarchical else ()):
        target, origin = getattr(model, target_name, None), getattr(source, source_name, None)
        if target is None or origin is None or target_name in copied:
            continue
        try:
            target.set_weights(fitted_weights(target, origin))
        except ValueError as exc:
            raise CheckpointError(f"--init-from: {target_name} does not fit the source model's ({exc})") from exc
        copied.append(target_name)
    if not copied:
        raise CheckpointError("--init-from: the source model shares no layer with this architecture")
    return copied


def make_optimizer(train_config: TrainConfig, total_steps: int, replicated: bool = False):
    """Adam with the run's learning-rate schedule and global-norm gradient clipping.

    The rate rises linearly from 0 to `learning_rate` over `warmup_steps` updates,
    then stays there ("constant") or follows a cosine to 10% of it at `total_steps`
    ("cosine"). Clipping rescales the whole gradient when its global L2 norm
    exceeds `clipnorm` (Pascanu et al. 2013); Keras's `clipnorm` would clip each
    variable on its own, which changes the gradient's direction.

    Args:
        total_steps: optimizer updates of the whole run (epochs × batches per epoch).
        replicated: training under `tf.distribute` (`chatbot.training.distribute.replica_adam`:
            the clip sees the summed gradient, as on one device).
    """
    import keras

    peak, warmup = train_config.learning_rate, train_config.warmup_steps
    decay_steps = max(total_steps - warmup, 1)
    alpha = 0.1 if train_config.lr_schedule == "cosine" else 1.0  # alpha 1: no decay after the warm-up
    if warmup == 0 and alpha == 1.0:
        learning_rate = peak
    elif warmup == 0:
        learning_rate = keras.optimizers.schedules.CosineDecay(peak, decay_steps=decay_steps, alpha=alpha)
    else:
        learning_rate = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=decay_steps, alpha=alpha, warmup_target=peak, warmup_steps=warmup
        )
    clipping = {"global_clipnorm": train_config.clipnorm} if train_config.clipnorm else {}
    if replicated:
        from chatbot.training.distribute import replica_adam

        return replica_adam(learning_rate=learning_rate, **clipping)
    return keras.optimizers.Adam(learning_rate=learning_rate, **clipping)


@dataclasses.dataclass
class TrainResult:
    out_dir: Path
    epochs_run: int  # epochs this call trained in, the last one maybe cut short (then `cut_at` says where)
    best_val_perplexity: float | None
    seconds: float
    stopped_by_budget: bool
    model: object = None  # the trained keras.Model as it stands after the last epoch (not the best one on disk)
    batches_run: int = 0  # optimizer updates this call made, all its epochs together
    target_tokens: int = 0  # target tokens of those batches
    epoch_batches: int = 0  # batches in a whole epoch
    cut_at: tuple[int, int] | None = None  # (epoch, 1-based; batches of it trained) when the last epoch was cut short

    @property
    def epochs_trained(self) -> float:
        """The batches this call ran, in epochs (0.25: a quarter of one)."""
        return self.batches_run / self.epoch_batches if self.epoch_batches else 0.0


def corpus_sources(train_config: TrainConfig) -> tuple[list[Source], Problems]:
    """The run's corpora, resolved (nothing read yet), and where their malformed records go.

    Raises:
        CorpusError: a SPEC names no corpus, or names a standard corpus as plain text.
    """
    options = ReadOptions(train_config.encoding, train_config.convokit_paths)
    sources = [resolve(spec, train_config.corpus_format, options) for spec in train_config.corpus]
    return sources, Problems(strict=not train_config.skip_malformed)


def split_windows(parts: list, model_config: ModelConfig, weights, log: Callable[[str], None]) -> dict:
    """The train and valid `TokenWindows` of a mixture, with the fallbacks tiny corpora need.

    Raises:
        CorpusError: no dialogue of two turns or more at all.
    """
    from chatbot.training.data import TokenWindows

    def windows(split: str | None, weighted: bool = False) -> TokenWindows:
        return TokenWindows(parts, split, model_config.max_turns, model_config.max_utterance_length, weights if weighted else None)

    found = {"train": windows("train", weighted=True), "valid": windows("valid")}
    if not len(found["train"]):
        # A handful of stored conversations may all hash into valid/test: fine-tuning on them is still wanted.
        found["train"] = windows(None, weighted=True)
        if not len(found["train"]):
            raise CorpusError("no dialogue with two or more turns to train on")
        log(f"warning: no dialogue falls in the train split; training on all {len(found['train'])} windows")
    if not len(found["valid"]):
        # Tiny corpora may hash no dialogue into valid; validate on train rather than not at all.
        log("warning: the valid split is empty; validating on the train split")
        found["valid"] = windows(found["train"].split)
    return found


def train(
    out_dir: Path,
    model_config: ModelConfig,
    train_config: TrainConfig,
    resume: bool = False,
    verbose: int | None = None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    distribute: str = "none",
    replicas: int = 1,
) -> TrainResult:
    """Train a model and write its directory (see `chatbot.inference.checkpoint`).

    With `resume`, the sizes, tokenizer and corpus come from `out_dir`, and
    training continues with the optimizer state after the last finished epoch, or, in an epoch a
    `--max-minutes` budget cut, with its first batch not yet trained.
    `train_config.epochs` is the total number of epochs, not the number added.
    `distribute` and `replicas` place the run on several devices or hosts
    (`chatbot.training.distribute`); they are not saved, so a run may resume on other hardware.

    Raises:
        CorpusError: the corpus cannot be read or has no training dialogues.
        CheckpointError: `out_dir` holds a model and `resume` is off, or holds none and `resume` is on.
        ConfigError: a placement that cannot be arranged (`chatbot.training.distribute.placement`).
    """
    import keras

    from chatbot.training.data import WindowBatches
    from chatbot.training.distribute import placement

    where = dataclasses.replace(placement(distribute, replicas), resuming=resume)  # before TensorFlow starts its devices
    where.check_batch_size(train_config.batch_size)

    out_dir = Path(out_dir)
    if resume:
        saved_model, saved_train = read_config(out_dir)
        model_config = saved_model
        train_config = dataclasses.replace(saved_train, epochs=train_config.epochs, max_minutes=train_config.max_minutes)
    elif where.is_chief and (out_dir / "config.json").exists():  # (other workers see the chief's own files appear)
        raise CheckpointError(f"{out_dir} already holds a model; continue it with --resume, or choose another --out")
    keras.utils.set_random_seed(train_config.seed)

    sources, problems = corpus_sources(train_config)
    label = corpus_label(train_config.corpus, train_config.corpus_weights)

    source = None
    if train_config.init_from and not resume:
        try:
            source = load_checkpoint(train_config.init_from)
        except CheckpointError as exc:
            raise CheckpointError(f"--init-from: {exc}") from exc
        if source.model_config.model == model_config.model:
            model_config = source.model_config
            log(f"fine-tuning {train_config.init_from}: all its weights, sizes and tokenizer")
        else:
            model_config = inherit_sizes(model_config, source.model_config)
            log(f"starting from {train_config.init_from}: its tokenizer and the layers both models have (sizes taken from it)")
    # Everything that can fail on the corpus happens before anything is written to out_dir.
    if resume:
        tokenizer = Tokenizer.load(out_dir / TOKENIZER_FILENAME)
    elif source is not None:
        tokenizer = source.tokenizer
    else:
        tokenizer = cached_tokenizer(
            sources,
            train_config.vocabulary_size,
            cache_dir(),
            lambda: train_texts(sources, train_config.max_dialogues, problems.strict),
            train_config.max_dialogues,
            log,
        )
        model_config = dataclasses.replace(model_config, vocabulary_size=tokenizer.vocabulary_size)
    parts = [tokenize_source(s, tokenizer, cache_dir(), train_config.max_dialogues, problems, log) for s in sources]
    if problems.count:
        log(f"warning: skipped {problems.count} malformed records (--skip-malformed); the first: {problems.messages[0]}")
    if where.backend != "tensorflow" and train_config.length_groups > 1:
        log(f"length groups are TensorFlow's (dynamic shapes); training on {where.backend} pads each batch to its bucket instead")
        train_config = dataclasses.replace(train_config, length_groups=1)
    if where.is_chief:
        out_dir.mkdir(parents=True, exist_ok=True)
    windows = split_windows(parts, model_config, train_config.corpus_weights, log)
    batches = {
        name: WindowBatches(split, train_config.batch_size, shuffle=name == "train", seed=train_config.seed)
        for name, split in windows.items()
    }
    if not resume and model_config.model == "vhred" and train_config.kl_anneal_fraction is not None:
        # Serban et al. (2017) anneal over the run: a share of the planned updates, whatever the corpus size.
        steps = max(1, round(train_config.kl_anneal_fraction * train_config.epochs * batches["train"].num_batches))
        model_config = dataclasses.replace(model_config, kl_anneal_steps=steps)
        log(f"KL weight rises over {steps} updates ({train_config.kl_anneal_fraction:g} of {train_config.epochs} epochs)")
    if not resume and where.is_chief:
        tokenizer.save(out_dir / TOKENIZER_FILENAME)
        write_config(out_dir, model_config, train_config)
    counts = [part.counts() for part in parts]
    summary = {
        "corpus": label,
        "train_dialogues": sum(c["train"]["dialogues"] for c in counts),
        "valid_dialogues": sum(c["valid"]["dialogues"] for c in counts),
        "train_windows": len(windows["train"]),
        "train_target_tokens": batches["train"].num_target_tokens,
        "train_batches": batches["train"].num_batches,
        "vocabulary_size": tokenizer.vocabulary_size,
    }
    if len(parts) > 1:
        summary["parts"] = [{"spec": s.spec, **c["train"]} for s, c in zip(sources, counts, strict=True)]
    log(
        f"{summary['train_dialogues']} train / {summary['valid_dialogues']} valid dialogues, "
        f"{summary['train_windows']} windows, {summary['train_target_tokens']} target tokens per epoch"
    )
    if where.name != "none":
        log(where.describe())

    from chatbot.models import dtype_policy

    with dtype_policy(train_config.precision):
        run = FitRun(out_dir, model_config, train_config, batches["train"], batches["valid"], where, summary, source)
        return _fit(run, verbose=verbose, log=log)


@dataclasses.dataclass(frozen=True)
class FitRun:
    """What `train` prepared for `_fit`: the run's directory, configs, batches and placement."""

    out_dir: Path
    model_config: ModelConfig
    train_config: TrainConfig
    train_batches: WindowBatches
    valid_batches: WindowBatches
    where: Placement
    summary: dict  # the data of metrics.json
    source: Checkpoint | None = None  # the --init-from model


def _fit(run: FitRun, *, verbose: int | None, log: Callable[[str], None]) -> TrainResult:
    """Build, compile and fit the model on prepared batches (under the run's dtype policy and placement).

    A run resumed in an epoch that the budget cut first fits that epoch's remaining batches alone
    (a `fit` of its own: Keras gives every epoch of one call the same number of batches), then the rest.
    """
    import keras

    from chatbot.models import build_model
    from chatbot.training.callbacks import (
        EpochProgbar,
        MetricsLog,
        PosteriorCollapseWarning,
        ProgressLog,
        RunProgress,
        TimeBudget,
        TrainingBackup,
        restore_backup,
    )

    out_dir, model_config, train_config, where, source = run.out_dir, run.model_config, run.train_config, run.where, run.source
    num_batches = run.train_batches.num_batches
    with where.scope():
        model = build_model(model_config, seed=train_config.seed, length_groups=train_config.length_groups)
        if source is not None and source.model_config == model_config:
            model.set_weights(source.model.get_weights())
        elif source is not None:
            copied = copy_encoder_weights(model, source.model)
            log(f"initialised {', '.join(copied)} from {train_config.init_from}")
        total_steps = train_config.epochs * num_batches
        model.compile(optimizer=make_optimizer(train_config, total_steps, replicated=where.strategy is not None))
        # Weights, optimizer state and the position in the data, on --resume; written after every epoch and kept.
        backup_dir = where.backup_dir(out_dir)
        epoch, batch = restore_backup(backup_dir, model)
    budget = TimeBudget(train_config.max_minutes, agree=where.any_worker) if train_config.max_minutes else None
    progress = RunProgress(num_batches, resumed_at=(epoch, batch))
    callbacks = [progress, TrainingBackup(backup_dir, progress)]
    callbacks.append(keras.callbacks.EarlyStopping(monitor="val_perplexity", mode="min", patience=train_config.patience))
    callbacks += [budget] if budget else []
    metrics_log = None
    if where.is_chief:  # only the chief writes the model directory
        metrics_log = MetricsLog(out_dir / METRICS_FILENAME, run.summary, progress)
        callbacks += _chief_callbacks(out_dir, model_config, train_config, metrics_log, where, log)
    if getattr(model, "latent_dim", 0):
        callbacks.append(PosteriorCollapseWarning(model_config.kl_anneal_steps, write=log))
    verbose = verbose if verbose is not None else (1 if sys.stderr.isatty() else 2)
    if verbose == 2:
        callbacks.append(ProgressLog(progress, write=log))
    if verbose and where.is_chief:
        callbacks.append(EpochProgbar(progress, train_config.epochs))

    # (first epoch, end epoch, first batch of the first epoch) of each fit call
    calls = [(epoch, epoch + 1, batch), (epoch + 1, train_config.epochs, 0)] if batch else [(epoch, train_config.epochs, 0)]
    if batch and epoch < train_config.epochs:
        log(f"resuming epoch {epoch + 1} after its batch {batch} of {num_batches}: training on the {num_batches - batch} it has not seen")
    started = time.monotonic()
    for first_epoch, end_epoch, first_batch in calls:
        if first_epoch >= end_epoch:
            continue
        feed = where.feed(run.train_batches, run.valid_batches, model_config.max_turns, first_batch)
        model.fit(
            feed.train,
            validation_data=feed.valid,
            initial_epoch=first_epoch,
            epochs=end_epoch,
            callbacks=[*feed.callbacks, *callbacks],
            shuffle=False,  # WindowBatches reshuffles every epoch itself
            verbose=verbose if where.is_chief else 0,
        )
        if model.stop_training:  # the budget or early stopping ended the run
            break
    cut_at = (progress.epoch + 1, progress.batch) if progress.epochs_run and progress.cut else None
    if cut_at:
        log(
            f"--max-minutes: stopped in epoch {cut_at[0]} after batch {cut_at[1]} of {num_batches}; --resume continues with batch {cut_at[1] + 1}"
        )
    return TrainResult(
        out_dir=out_dir,
        epochs_run=progress.epochs_run,
        best_val_perplexity=metrics_log.best_val_perplexity if metrics_log else None,
        seconds=time.monotonic() - started,
        stopped_by_budget=bool(budget and budget.exhausted),
        model=model,
        batches_run=progress.batches_run,
        target_tokens=progress.tokens_run,
        epoch_batches=num_batches,
        cut_at=cut_at,
    )


def _chief_callbacks(out_dir, model_config, train_config, metrics_log, where, log) -> list:
    """The callbacks that write the model directory: best model, TensorBoard logs, metrics and curves."""
    import keras

    from chatbot.training.callbacks import CurvesPlot

    callbacks = [
        keras.callbacks.ModelCheckpoint(
            str(out_dir / MODEL_FILENAME),
            monitor="val_perplexity",
            mode="min",
            save_best_only=True,
            initial_value_threshold=metrics_log.best_val_perplexity,
        ),
        metrics_log,
        CurvesPlot(
            metrics_log, out_dir / CURVES_FILENAME, f"{out_dir.name}: {model_config.model}, {corpus_label(train_config.corpus)}", write=log
        ),
    ]
    if where.backend == "tensorflow":  # Keras's TensorBoard callback writes through TensorFlow
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(out_dir / "logs")))
    return callbacks
