"""Keras callbacks of a training run: the wall-time budget, metrics.json and its curves.png.

Also what a run counts of the batches it trained (`RunProgress`), the backup `--resume` continues
from, cut epochs included (`TrainingBackup`), and a progress bar that ends where a cut epoch ended
(`EpochProgbar`).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import keras

from chatbot.errors import CheckpointError


class RunProgress(keras.callbacks.Callback):
    """What a run has trained, counted from the batches that ran (the first callback: the others read it).

    Attributes:
        epoch_batches: batches in a whole epoch.
        epoch: the epoch `fit` is in (0-based).
        first_batch: where this process started in `epoch` (0, or where a resumed run's cut epoch stopped).
        batch: batches of `epoch` trained so far, those before a cut included.
        epochs_run, batches_run, tokens_run: epochs entered (the last maybe cut), optimizer updates
            and target tokens of this process, all its `fit` calls together.
    """

    def __init__(self, epoch_batches: int, resumed_at: tuple[int, int] = (0, 0)):
        """`resumed_at`: (epoch, batches of it trained) where a resumed run starts (`restore_backup`)."""
        super().__init__()
        self.epoch_batches = epoch_batches
        self.resumed_at = resumed_at
        self.epoch, self.first_batch, self.batch = resumed_at[0], resumed_at[1], resumed_at[1]
        self.epochs_run = self.batches_run = self.tokens_run = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.first_batch = self.batch = self.resumed_at[1] if epoch == self.resumed_at[0] else 0

    def on_train_batch_end(self, batch, logs=None):
        self.batch = self.first_batch + batch + 1  # `batch`: fit's 0-based step in this epoch

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_run += 1
        self.batches_run += self.batch - self.first_batch
        self.tokens_run += round(float((logs or {}).get("tokens", 0.0)))

    @property
    def cut(self) -> bool:
        """Whether the epoch ended (or ends) before its last batch: stopped by the budget."""
        return self.batch < self.epoch_batches


class TrainingBackup(keras.callbacks.Callback):
    """The state `--resume` continues from, written after every epoch, a cut one too: the weights with the
    optimizer's variables, and where the run stands in the data.

    In `directory`, with the file names and format of `keras.callbacks.BackupAndRestore` (so a backup
    written by it resumes too): `latest.weights.h5` (`Model.save_weights`: the weights and the
    optimizer's state) and `training_metadata.json`, `{"epoch": E, "batch": K}`: the next epoch to train
    (0-based) and how many of its batches are trained already (0, or the batches before a cut; every
    epoch's order is fixed by the seed, so a resumed run skips exactly those). Each write first copies
    the previous pair to `*.bkp`, which `restore_backup` falls back to when the latest cannot be read.
    """

    WEIGHTS = "latest.weights.h5"
    METADATA = "training_metadata.json"

    def __init__(self, directory: Path, progress: RunProgress):
        super().__init__()
        self.directory = Path(directory)
        self.progress = progress

    def on_epoch_end(self, epoch, logs=None):
        progress = self.progress
        self.save(*((epoch, progress.batch) if progress.cut else (epoch + 1, 0)))

    def save(self, epoch: int, batch: int) -> None:
        """Write the model's state as the position (`epoch`, `batch`): see the class."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in (self.WEIGHTS, self.METADATA):
            if (self.directory / name).exists():
                shutil.copyfile(self.directory / name, self.directory / f"{name}.bkp")
        self.model.save_weights(self.directory / self.WEIGHTS, overwrite=True)
        (self.directory / self.METADATA).write_text(json.dumps({"epoch": epoch, "batch": batch}))


def restore_backup(directory: Path, model) -> tuple[int, int]:
    """Load the backup a `TrainingBackup` wrote in `directory` into `model` (compiled: `DialogueModel.compile`
    built the optimizer's variables, which the backup's values load into).

    Returns:
        (epoch, batch): the next epoch to train (0-based) and the batches of it trained; (0, 0) without a backup.
    Raises:
        CheckpointError: neither the backup nor the one before it can be read.
    """
    directory = Path(directory)
    weights, metadata = directory / TrainingBackup.WEIGHTS, directory / TrainingBackup.METADATA
    if not weights.exists():
        return 0, 0
    try:
        model.load_weights(weights)
    except (OSError, ValueError) as exc:
        previous = weights.with_name(weights.name + ".bkp")
        if not previous.exists():
            raise CheckpointError(f"{weights}: cannot read the backup ({exc}); remove {directory} to start over") from exc
        # As Keras's BackupAndRestore: the previous pair becomes the latest, so the next write keeps it.
        shutil.copyfile(previous, weights)
        if metadata.with_name(metadata.name + ".bkp").exists():
            shutil.copyfile(metadata.with_name(metadata.name + ".bkp"), metadata)
        else:
            metadata.unlink(missing_ok=True)
        model.load_weights(weights)
    position = json.loads(metadata.read_text()) if metadata.exists() else {}
    return int(position.get("epoch", 0)), int(position.get("batch", 0))


class EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, honest about a cut epoch: its last line shows the batches that ran and
    their time per batch ("88/397 - 59s - 670ms/step"), not the epoch's count ("397/397 - 59s - 149ms/step").

    The epoch line counts the run's epochs (Keras's counts one `fit` call's), and for the rest of a cut
    epoch names the batch it resumes with.
    """

    def __init__(self, progress: RunProgress, epochs: int):
        super().__init__()
        self.progress = progress
        self.run_epochs = epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = 1  # Keras's own epoch line is off: on_epoch_begin prints the run's

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        first, total = self.progress.first_batch, self.progress.epoch_batches
        if self.verbose and (self.run_epochs > 1 or first):
            resumed = f" (resumed: batches {first + 1}-{total} of {total})" if first else ""
            print(f"Epoch {epoch + 1}/{self.run_epochs}{resumed}", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        if self.progbar is not None and self.target is not None and self.seen < self.target:
            self.progbar.update(self.seen, list((logs or {}).items()), finalize=True)
        else:
            super().on_epoch_end(epoch, logs)


class TimeBudget(keras.callbacks.Callback):
    """Stops training after `max_minutes` of wall time, after the batch that crossed it; the cut epoch
    is still validated and saved (`RunProgress` counts what ran, `TrainingBackup` where to resume)."""

    def __init__(self, max_minutes: float, agree=None):
        """`agree(flag) -> bool`: whether any worker's budget is spent (a collective under multi-worker
        training, where every worker must stop after the same batch); None: this process decides."""
        super().__init__()
        self.max_seconds = max_minutes * 60.0
        self.started = time.monotonic()
        self.exhausted = False
        self.agree = agree or (lambda flag: flag)

    def on_train_batch_end(self, batch, logs=None):
        if self.agree(time.monotonic() - self.started > self.max_seconds):
            self.exhausted = True
            self.model.stop_training = True


class MetricsLog(keras.callbacks.Callback):
    """Appends every epoch's metrics, wall time (seconds), batches and throughput (target tokens/second) to metrics.json.

    Existing epochs in the file (an earlier run being resumed) are kept. A cut epoch's row has
    `batches` < `epoch_batches`; when a resumed run finishes that epoch, its row is merged into the cut
    one (`merged_epoch`), so each epoch has one row counting all of its batches. `best` is the row of
    the lowest validation perplexity ever recorded (the model `model.keras` holds), a cut epoch's too.
    """

    def __init__(self, path: Path, summary: dict, progress: RunProgress):
        super().__init__()
        self.path = Path(path)
        self.progress = progress
        self.payload = json.loads(self.path.read_text()) if self.path.exists() else {"epochs": []}
        self.payload["data"] = summary

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        progress = self.progress
        row = {"epoch": epoch + 1, "seconds": round(time.monotonic() - self.epoch_started, 1)}
        row.update({"batches": progress.batch - progress.first_batch, "epoch_batches": progress.epoch_batches})
        row.update({k: float(v) for k, v in (logs or {}).items()})
        earlier = [e for e in self.payload["epochs"] if e["epoch"] == epoch + 1]
        if progress.first_batch:
            if earlier and earlier[0].get("batches") == progress.first_batch:
                row = merged_epoch(earlier[0], row)
            else:  # (the cut part's row is not in this file: the row counts this run's batches only)
                row["resumed_after_batch"] = progress.first_batch
        if "tokens" in row and row["seconds"]:
            row["target_tokens_per_second"] = round(row["tokens"] / row["seconds"], 1)
        self.payload["epochs"] = [e for e in self.payload["epochs"] if e["epoch"] != epoch + 1] + [row]
        best = self.payload.get("best")
        if "val_perplexity" in row and (best is None or row["val_perplexity"] < best["val_perplexity"]):
            self.payload["best"] = dict(row)
        self.path.write_text(json.dumps(self.payload, indent=2) + "\n")

    @property
    def best_val_perplexity(self) -> float | None:
        best = self.payload.get("best")
        return best["val_perplexity"] if best else None


# Training metrics that are means over batches; the others are means over target tokens (VHRED's `kl` is
# one over replies, merged by tokens too: replies and tokens grow together).
PER_BATCH_MEANS = ("kl_weight", "active_units")


def merged_epoch(cut: dict, rest: dict) -> dict:
    """One metrics.json row for an epoch trained in two parts: `cut`, the row of its first batches (a run
    stopped by the budget), and `rest`, the row of the batches after them (the resumed run).

    Batches, seconds and tokens add up; a training mean is the mean over both parts, weighted by target
    tokens or, for `PER_BATCH_MEANS`, by batches (the perplexity through its logarithm), so a row equals
    the uninterrupted epoch's; the validation metrics are `rest`'s, measured after the whole epoch.
    """
    row = dict(rest, resumed_after_batch=cut["batches"])
    for name in ("seconds", "tokens", "batches"):
        row[name] = cut.get(name, 0) + rest.get(name, 0)
    row["seconds"] = round(row["seconds"], 1)
    for name, value in rest.items():
        if name in ("epoch", "epoch_batches", "seconds", "tokens", "batches") or name.startswith("val_") or name not in cut:
            continue
        weight = "batches" if name in PER_BATCH_MEANS else "tokens"
        first, second = cut.get(weight, 0), rest.get(weight, 0)
        if not first + second:
            continue
        if name == "perplexity":
            row[name] = math.exp((first * math.log(cut[name]) + second * math.log(value)) / (first + second))
        else:
            row[name] = (first * cut[name] + second * value) / (first + second)
    return row


class CurvesPlot(keras.callbacks.Callback):
    """Redraws the PNG of perplexity (and VHRED's KL and beta) per epoch from the metrics MetricsLog has just
    written (so it must come after it in the callback list): after an epoch when `every_seconds` have passed
    since the last drawing, and once more when training ends. Epochs of minutes get a new picture each; a
    run of short epochs is drawn once a minute and at its end, not for every epoch (a drawing costs about
    0.3 s of CPU, as much as a tiny model's epoch).

    A failure to draw is reported through `write` and never stops training.
    """

    def __init__(self, metrics_log: MetricsLog, path: Path, title: str = "", write=print, every_seconds: float = 60.0):
        super().__init__()
        self.metrics_log = metrics_log
        self.path = Path(path)
        self.title = title
        self.write = write
        self.every_seconds = every_seconds
        self.drawn_at = time.monotonic()
        self.pending = False

    def on_train_begin(self, logs=None):
        self.drawn_at = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        self.pending = True
        if time.monotonic() - self.drawn_at >= self.every_seconds:
            self._draw()

    def on_train_end(self, logs=None):
        if self.pending:
            self._draw()

    def _draw(self) -> None:
        from chatbot.training.plots import training_curves

        self.drawn_at, self.pending = time.monotonic(), False
        try:
            training_curves(self.metrics_log.payload, self.path, self.title)
        except Exception as exc:  # noqa: BLE001 - a picture is never worth a lost training run
            self.write(f"warning: could not draw {self.path}: {exc}")


class ProgressLog(keras.callbacks.Callback):
    """One progress line every `every_seconds` for logs that are not a terminal (e.g. under nohup).

    Prints batches done of the epoch (a resumed cut epoch counts those before the cut), running loss and
    perplexity (and VHRED's loss terms), and target tokens per second.
    """

    LATENT_TERMS = ("reconstruction", "kl", "bow", "kl_weight", "active_units")

    def __init__(self, progress: RunProgress, every_seconds: float = 60.0, write=print):
        super().__init__()
        self.progress = progress
        self.every_seconds = every_seconds
        self.write = write

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1
        self.started = self.last = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self.last < self.every_seconds or not logs:
            return
        self.last = now
        rate = float(logs.get("tokens", 0.0)) / (now - self.started)
        latent = "".join(f", {name} {float(logs[name]):.3f}" for name in self.LATENT_TERMS if name in logs)
        self.write(
            f"epoch {self.epoch}: {self.progress.batch}/{self.progress.epoch_batches} batches, loss {float(logs['loss']):.4f}, "
            f"perplexity {float(logs['perplexity']):.2f}{latent}, {rate:.0f} target tokens/s, {(now - self.started) / 60:.1f} min"
        )


class PosteriorCollapseWarning(keras.callbacks.Callback):
    """Warns when a latent model's validation KL per reply stays near zero after KL annealing ended.

    A collapsed posterior (q(z|x) = p(z)) means the decoder ignores z and the
    model is an HRED with noise (Bowman et al. 2016; Serban et al. 2017).
    """

    def __init__(self, anneal_steps: int, threshold_nats: float = 0.1, write=print):
        super().__init__()
        self.anneal_steps = anneal_steps
        self.threshold_nats = threshold_nats
        self.write = write
        self.warned_epochs: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        kl = (logs or {}).get("val_kl")
        if kl is None or int(self.model.optimizer.iterations.numpy()) < self.anneal_steps:
            return
        if float(kl) < self.threshold_nats:
            self.warned_epochs.append(epoch + 1)
            self.write(
                f"warning: posterior collapse: validation KL is {float(kl):.3f} nats per reply after KL annealing "
                f"ended (epoch {epoch + 1}); the decoder ignores the latent variable. Try a higher --word-dropout, "
                "--bow-weight 1, or a longer --kl-anneal-steps"
            )
