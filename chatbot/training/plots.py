"""PNG pictures of training runs and evaluations (matplotlib, drawn off-screen with the Agg backend).

No TensorFlow here: the pictures are drawn from metrics.json and eval reports.
"""

from __future__ import annotations

import os
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    """Write the figure atomically (a half-written PNG never replaces a good one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    figure.savefig(partial, format="png", dpi=100)
    os.replace(partial, path)
    return path


def _position(epoch: dict) -> float:
    """Where on the epoch axis a metrics.json row lies: its epoch number, less the share of the epoch
    a cut run did not train (a row with `batches` < `epoch_batches`)."""
    if epoch.get("epoch_batches") and "batches" in epoch:
        return epoch["epoch"] - 1 + epoch["batches"] / epoch["epoch_batches"]
    return epoch["epoch"]


def _plot_series(axis, epochs: list[dict], series: tuple[tuple[str, str, str], ...]) -> None:
    """Plot each (metrics key, label, line style) against the epochs that recorded it."""
    for key, label, style in series:
        points = [(_position(e), e[key]) for e in epochs if key in e]
        if points:
            axis.plot(*zip(*points, strict=True), style, label=label)


def training_curves(metrics: dict, path: Path, title: str = "") -> Path:
    """Training and validation perplexity per epoch (log scale), and for a latent model (VHRED) the
    KL term in nats per reply with the KL weight beta (its annealing, Bowman et al. 2016), as a PNG.
    An epoch cut short is drawn at the share of it that was trained.

    Args:
        metrics: the content of a model directory's metrics.json (`{"epochs": [{"epoch", "perplexity",
            "val_perplexity", "kl", "val_kl", "kl_weight", ...}]}`).
        path: the PNG to write.
    Returns:
        `path`.
    Raises:
        ValueError: no epoch has been recorded yet.
    """
    epochs = sorted(metrics.get("epochs", []), key=lambda e: e["epoch"])
    if not epochs:
        raise ValueError("no finished epoch to plot")
    plt = _pyplot()
    latent = any("kl" in e for e in epochs)
    figure, axes = plt.subplots(1, 2 if latent else 1, figsize=(11 if latent else 6, 4), squeeze=False)
    numbers = [e["epoch"] for e in epochs]
    perplexity = axes[0][0]
    _plot_series(perplexity, epochs, (("perplexity", "training", "o-"), ("val_perplexity", "validation", "s-")))
    perplexity.set_yscale("log")
    perplexity.set_xlabel("epoch")
    perplexity.set_ylabel("perplexity (log scale; VHRED: ELBO bound)")
    perplexity.set_xticks(numbers)
    perplexity.grid(True, which="both", alpha=0.3)
    perplexity.legend()
    if latent:
        kl = axes[0][1]
        _plot_series(kl, epochs, (("kl", "KL, training", "o-"), ("val_kl", "KL, validation", "s-")))
        kl.set_xlabel("epoch")
        kl.set_ylabel("KL (nats per reply)")
        kl.set_xticks(numbers)
        kl.grid(True, alpha=0.3)
        beta = kl.twinx()
        beta.plot(
            [_position(e) for e in epochs],
            [e.get("kl_weight", float("nan")) for e in epochs],
            "^--",
            color="tab:gray",
            label="β (KL weight)",
        )
        beta.set_ylabel("β")
        beta.set_ylim(0, 1.05)
        lines = kl.get_legend_handles_labels()
        more = beta.get_legend_handles_labels()
        kl.legend(lines[0] + more[0], lines[1] + more[1])
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    try:
        return _save(figure, path)
    finally:
        plt.close(figure)


def eval_comparison(rows: list[dict], path: Path) -> Path:
    """Perplexity (log scale) and distinct-2 of each evaluated model side by side, as a PNG.

    Args:
        rows: the `rows` of a `chatbot eval` report (one per model, named by its label and
            architecture); a row without generated replies (the n-gram baselines, or `--contexts 0`)
            has no distinct-2 bar, only "n/a".
        path: the PNG to write.
    Returns:
        `path`.
    """
    plt = _pyplot()
    figure = _eval_figure(plt, rows)
    try:
        return _save(figure, path)
    finally:
        plt.close(figure)


def _eval_title(row: dict) -> str:
    """`label (architecture)`, or the label alone where it is the architecture (a baseline): as the eval table."""
    label = row.get("label") or row["architecture"]
    return label if label == row["architecture"] else f"{label} ({row['architecture']})"


def _eval_figure(plt, rows: list[dict]):
    """The figure `eval_comparison` saves (the caller closes it)."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = [_eval_title(row) for row in rows]
    positions = range(len(rows))
    left.bar_label(left.bar(positions, [row["perplexity"]["value"] for row in rows], color="tab:blue"), fmt="%.1f")
    left.set_yscale("log")
    left.set_ylabel("test perplexity (log scale; VHRED: bound)")
    generated = [(row.get("generation") or {}) for row in rows]
    has = [i for i, g in enumerate(generated) if g.get("distinct_2") is not None and g.get("contexts", 1) > 0]
    right.bar_label(right.bar(has, [generated[i]["distinct_2"] for i in has], color="tab:orange"), fmt="%.3f")
    for i in sorted(set(positions) - set(has)):  # nothing generated: no bar that reads as a measured 0
        right.text(i, 0.02, "n/a", ha="center", va="bottom", color="tab:gray")
    right.set_ylabel("distinct-2")
    right.set_ylim(0, 1)
    right.set_xlim(left.get_xlim())  # every row has its place, with a bar or without
    for axis in (left, right):
        axis.set_xticks(list(positions), names, rotation=20, ha="right")
        axis.grid(True, axis="y", alpha=0.3)
    figure.suptitle(f"{rows[0]['corpus']} · {rows[0]['split']} split")
    figure.tight_layout()
    return figure
