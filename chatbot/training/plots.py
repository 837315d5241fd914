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


def _plot_series(axis, epochs: list[dict], series: tuple[tuple[str, str, str], ...]) -> None:
    """Plot each (metrics key, label, line style) against the epochs that recorded it."""
    for key, label, style in series:
        points = [(e["epoch"], e[key]) for e in epochs if key in e]
        if points:
            axis.plot(*zip(*points, strict=True), style, label=label)


def training_curves(metrics: dict, path: Path, title: str = "") -> Path:
    """Training and validation perplexity per epoch (log scale), and for a latent model (VHRED) the
    KL term in nats per reply with the KL weight beta (its annealing, Bowman et al. 2016), as a PNG.

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
        beta.plot(numbers, [e.get("kl_weight", float("nan")) for e in epochs], "^--", color="tab:gray", label="β (KL weight)")
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
        rows: the `rows` of a `chatbot eval` report (one per model; a row without generation
            metrics, like the n-gram baseline, shows perplexity only).
        path: the PNG to write.
    Returns:
        `path`.
    """
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = [row["architecture"] for row in rows]
    positions = range(len(rows))
    left.bar_label(left.bar(positions, [row["perplexity"]["value"] for row in rows], color="tab:blue"), fmt="%.1f")
    left.set_yscale("log")
    left.set_ylabel("test perplexity (log scale; VHRED: bound)")
    right.bar_label(
        right.bar(positions, [(row.get("generation") or {}).get("distinct_2") or 0.0 for row in rows], color="tab:orange"), fmt="%.3f"
    )
    right.set_ylabel("distinct-2")
    right.set_ylim(0, 1)
    for axis in (left, right):
        axis.set_xticks(list(positions), names, rotation=20, ha="right")
        axis.grid(True, axis="y", alpha=0.3)
    figure.suptitle(f"{rows[0]['corpus']} · {rows[0]['split']} split")
    figure.tight_layout()
    try:
        return _save(figure, path)
    finally:
        plt.close(figure)
