"""Training beyond one device: two TensorFlow workers on 127.0.0.1 (`--distribute multi-worker`),
CPU replicas (`--distribute mirrored`) with `--resume`, and the JAX backend (with
`keras.distribution.DataParallel` over two host devices) whose model chats under TensorFlow.

Each of these trainings runs in its own interpreter, as a user's would: a strategy, a backend and
the device count are fixed when TensorFlow or JAX starts. The one-device reference they are held
to needs none of these, and trains in the test's own process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from chatbot.config import TrainConfig, model_config

# The run's configs come as JSON (`configs` below, the same for the reference trained here). At the end
# the interpreter's last garbage collection is skipped (gc.freeze): after a training it spends over a
# second of CPU collecting what the process is about to drop anyway; the rest of the exit is as usual.
TRAIN = textwrap.dedent(
    """
    import gc
    import json
    import sys
    {prelude}
    from pathlib import Path
    import numpy as np
    from chatbot.config import ModelConfig, TrainConfig, from_dict
    from chatbot.training.trainer import train
    out, weights, distribute, replicas, resume, config, train_config = sys.argv[1:8]
    config, train_config = from_dict(ModelConfig, json.loads(config)), from_dict(TrainConfig, json.loads(train_config))
    result = train(Path(out), config, train_config, resume=resume == "1", verbose=0,
                   distribute=distribute, replicas=int(replicas), log=lambda line: print(line, file=sys.stderr))
    np.savez(weights, *result.model.get_weights())
    gc.freeze()
    """
)


def configs(epochs: int, model: str = "hred", max_dialogues: int = 48):
    """A tiny model on a few dialogues of chatterbot:english: 1 epoch of a few batches of 8 windows; no
    dropout, so that one device and several replicas compute the same function."""
    config = model_config("tiny", model=model, dropout=0.0)
    settings = dict(vocabulary_size=400, learning_rate=3e-3, lr_schedule="constant", length_groups=1, seed=3)
    return config, TrainConfig(corpus=("chatterbot:english",), max_dialogues=max_dialogues, epochs=epochs, batch_size=8, **settings)


def _arguments(out, weights, distribute, replicas, resume, config, train_config) -> list[str]:
    as_json = [json.dumps(dataclasses.asdict(c)) for c in (config, train_config)]
    return [str(out), str(weights), distribute, str(replicas), str(int(resume)), *as_json]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start(tmp_path, out, weights, distribute="none", replicas=1, epochs=1, env=None, prelude="", resume=False):
    script = tmp_path / "train_run.py"
    script.write_text(TRAIN.format(prelude=prelude))
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.Popen(
        [sys.executable, str(script), *_arguments(out, weights, distribute, replicas, resume, *configs(epochs))],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _weights(path) -> list[np.ndarray]:
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def _epochs(out) -> list[dict]:
    return json.loads((out / "metrics.json").read_text())["epochs"]


def _finish_all(processes) -> list[str]:
    finished = [(process, process.communicate(timeout=300)[0]) for process in processes]
    for process, _ in finished:
        assert process.returncode == 0, "\n\n".join(f"--- process {i}:\n{o[-2500:]}" for i, (_, o) in enumerate(finished))
    return [output for _, output in finished]


def _same_run(out, weights, reference_out, reference_weights):
    """Both epochs' losses and the final weights of a run equal the one-device reference's."""
    run, reference = _epochs(out), _epochs(reference_out)
    assert [e["epoch"] for e in run] == [e["epoch"] for e in reference] == [1, 2]
    for epoch, expected in zip(run, reference, strict=True):
        for name in ("loss", "perplexity", "val_loss", "val_perplexity"):
            assert epoch[name] == pytest.approx(expected[name], rel=1e-4), (epoch["epoch"], name)
        assert epoch["tokens"] == expected["tokens"]
    for a, b in zip(_weights(weights), reference_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)  # the same steps; only the summation order differs


@pytest.mark.slow
@pytest.mark.distributed
def test_two_workers_and_two_replicas_match_one_device_and_resume(tmp_path):
    """Two epochs on one device are the reference. Two TensorFlow workers on 127.0.0.1 (each with one
    CPU replica) and one process with two CPU replicas, stopped after epoch 1 and resumed, must end
    with the same losses and weights (the same global batches, in the same order)."""
    from chatbot.training.trainer import train

    mirrored = _start(tmp_path, tmp_path / "mirrored", tmp_path / "mirrored-1.npz", "mirrored", replicas=2, epochs=1)
    reference = train(tmp_path / "one-device", *configs(epochs=2), verbose=0, log=lambda line: None).model.get_weights()  # meanwhile
    outputs = _finish_all([mirrored])
    assert "training on 2 replicas (mirrored, tensorflow)" in outputs[0]
    assert [e["epoch"] for e in _epochs(tmp_path / "mirrored")] == [1]
    # --resume on two replicas: the second epoch continues from the first's weights, optimizer state and shuffle.
    resumed = _start(tmp_path, tmp_path / "mirrored", tmp_path / "mirrored.npz", "mirrored", replicas=2, epochs=2, resume=True)
    # Meanwhile, two workers train the same run afresh.
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    shared = tmp_path / "shared-model"  # the chief's model directory, seen by both workers
    workers = [
        _start(
            tmp_path,
            shared,
            tmp_path / f"worker{index}.npz",
            "multi-worker",
            epochs=2,
            env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})},
        )
        for index in range(2)
    ]
    outputs = _finish_all([resumed, *workers])[1:]
    _same_run(tmp_path / "mirrored", tmp_path / "mirrored.npz", tmp_path / "one-device", reference)

    assert "training on 2 replicas (multi-worker, tensorflow); this process is the chief" in outputs[0]
    assert "this process is the worker" in outputs[1]
    for a, b in zip(_weights(tmp_path / "worker0.npz"), _weights(tmp_path / "worker1.npz"), strict=True):
        np.testing.assert_array_equal(a, b)  # one all-reduced update, applied on both
    _same_run(shared, tmp_path / "worker0.npz", tmp_path / "one-device", reference)
    assert (shared / "model.keras").exists() and (shared / "tokenizer.model").exists()  # the chief's


def test_distribute_refusals_are_one_line(tmp_path, capsys, monkeypatch):
    from chatbot.cli.parser import main

    monkeypatch.delenv("TF_CONFIG", raising=False)
    base = ["train", "--corpus", "chatterbot:english", "--preset", "tiny", "--out", str(tmp_path / "m")]
    for argv, expected in (
        (["--distribute", "multi-worker"], "TF_CONFIG is not set"),
        (["--distribute", "mirrored", "--replicas", "0"], "--replicas must be at least 1"),
        (["--distribute", "mirrored", "--batch-size", "0"], "--batch-size must be at least 1"),
    ):
        code = main(base + argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(err) == 1 and expected in err[0], err
    monkeypatch.setenv("TF_CONFIG", "{not json")
    assert main(base + ["--distribute", "multi-worker"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TF_CONFIG is not a cluster and task" in err[0], err
    assert not (tmp_path / "m" / "config.json").exists()  # no model written
    from chatbot.errors import ConfigError
    from chatbot.training.distribute import Placement

    Placement("mirrored", "tensorflow", replicas=2).check_batch_size(64)
    with pytest.raises(ConfigError, match="--batch-size 63 does not split over 2 replicas"):
        Placement("mirrored", "tensorflow", replicas=2).check_batch_size(63)


BLOCK_TENSORFLOW = "sys.modules['tensorflow'] = None  # the JAX training path must not need TensorFlow"


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("model", ["vhred"])
def test_jax_trains_on_two_host_devices_without_tensorflow_and_the_model_chats_under_tensorflow(tmp_path, model):
    (tmp_path / "train_run.py").write_text(TRAIN.format(prelude=BLOCK_TENSORFLOW))
    # 32 dialogues: batches of two lengths (JAX compiles a step for each), whose losses still fall in epoch 2.
    arguments = _arguments(tmp_path / "jax-model", tmp_path / "w.npz", "mirrored", 2, False, *configs(2, model, max_dialogues=32))
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        # Two CPU devices; XLA's cheapest CPU compile (the test is about what is computed, not how fast).
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
        "JAX_PLATFORMS": "cpu",
    }
    run = subprocess.run(
        [sys.executable, str(tmp_path / "train_run.py"), *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "training on 2 replicas (mirrored, jax)" in run.stderr
    first, second = _epochs(tmp_path / "jax-model")
    assert first["tokens"] == second["tokens"] > 0
    assert np.isfinite(first["loss"]) and second["loss"] < first["loss"] and second["val_loss"] < first["val_loss"]  # it learns
    # KL annealing read the optimizer's step inside JAX's compiled step (not a constant captured once).
    assert 0 < first["kl_weight"] < second["kl_weight"] <= 1
    # The file JAX wrote loads (safe mode) and chats under the default TensorFlow backend.
    env = {key: value for key, value in os.environ.items() if key not in ("KERAS_BACKEND", "XLA_FLAGS")}
    chat = subprocess.run(
        [
            sys.executable,
            "-m",
            "chatbot",
            "chat",
            "--model",
            str(tmp_path / "jax-model"),
            "--db",
            f"sqlite:///{tmp_path / 'chat.db'}",
            "--greedy",
        ],
        input="hello, how are you?\nwhat do you like?\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert chat.returncode == 0, chat.stderr[-3000:]
    replies = [line for line in chat.stdout.splitlines() if line.startswith("bot> ")]
    assert len(replies) == 2 and all(len(line) > len("bot> ") for line in replies), chat.stdout
    assert f"{model}" in chat.stdout + chat.stderr
