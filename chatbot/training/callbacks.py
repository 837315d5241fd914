"""Keras callbacks of a training run: the wall-time budget, metrics.json and its curves.png."""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras


class TimeBudget(keras.callbacks.Callback):
    """Stops training after `max_minutes` of wall time; the interrupted epoch is still validated and saved."""

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
    """Appends every epoch's metrics, wall time (seconds) and throughput (target tokens/second) to metrics.json.

    Existing epochs in the file (an earlier run being resumed) are kept.
    """

    def __init__(self, path: Path, summary: dict):
        super().__init__()
        self.path = Path(path)
        self.payload = json.loads(self.path.read_text()) if self.path.exists() else {"epochs": []}
        self.payload["data"] = summary

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.monotonic() - self.epoch_started
        row = {"epoch": epoch + 1, "seconds": round(seconds, 1)}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        if "tokens" in row:
            row["target_tokens_per_second"] = round(row["tokens"] / seconds, 1)
        self.payload["epochs"] = [e for e in self.payload["epochs"] if e["epoch"] != epoch + 1] + [row]
        scored = [e for e in self.payload["epochs"] if "val_perplexity" in e]
        if scored:
            self.payload["best"] = min(scored, key=lambda e: e["val_perplexity"])
        self.path.write_text(json.dumps(self.payload, indent=2) + "\n")

    @property
    def best_val_perplexity(self) -> float | None:
        best = self.payload.get("best")
        return best["val_perplexity"] if best else None


class CurvesPlot(keras.callbacks.Callback):
    """Redraws the PNG of perplexity (and VHRED's KL and beta) per epoch after every epoch, from the
    metrics MetricsLog has just written (so it must come after it in the callback list).

    A failure to draw is reported through `write` and never stops training.
    """

    def __init__(self, metrics_log: MetricsLog, path: Path, title: str = "", write=print):
        super().__init__()
        self.metrics_log = metrics_log
        self.path = Path(path)
        self.title = title
        self.write = write

    def on_epoch_end(self, epoch, logs=None):
        from chatbot.training.plots import training_curves

        try:
            training_curves(self.metrics_log.payload, self.path, self.title)
        except Exception as exc:  # noqa: BLE001 - a picture is never worth a lost training run
            self.write(f"warning: could not draw {self.path}: {exc}")


class ProgressLog(keras.callbacks.Callback):
    """One progress line every `every_seconds` for logs that are not a terminal (e.g. under nohup).

    Prints batches done, running loss and perplexity (and VHRED's loss terms), and target tokens per second.
    """

    LATENT_TERMS = ("reconstruction", "kl", "bow", "kl_weight", "active_units")

    def __init__(self, num_batches: int, every_seconds: float = 60.0, write=print):
        super().__init__()
        self.num_batches = num_batches
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
            f"epoch {self.epoch}: {batch + 1}/{self.num_batches} batches, loss {float(logs['loss']):.4f}, "
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
