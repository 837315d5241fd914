"""The `chatbot` command line. User errors become one line on stderr and a nonzero exit.

`build_parser` defines every command and flag; `main` parses, silences native logs and runs
the command's handler from `chatbot.cli.commands`, turning a `ChatbotError` into one line.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing

from chatbot.cli import commands
from chatbot.cli.native_logs import native_logs_silenced
from chatbot.config import MODEL_TYPES, PRESETS, ModelConfig, TrainConfig, flag_fields
from chatbot.corpus.registry import FORMATS
from chatbot.errors import ChatbotError
from chatbot.inference.lean_import import skip_optional_imports

# Quiet TensorFlow's C++ logging after start-up (start-up lines ignore it: see native_logs).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _add_db(parser: argparse.ArgumentParser, nested: bool = False) -> None:
    # A nested subcommand must not reset a --db given before it (argparse copies subparser defaults over).
    parser.add_argument(
        "--db", default=argparse.SUPPRESS if nested else None, help="SQLAlchemy database URL (default: sqlite:///storage/chatbot.db)"
    )


def _weights(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 1,2, got {text!r}") from None


def _add_corpus_reading(parser: argparse.ArgumentParser, mixture: bool = True) -> None:
    """The flags that say how corpus files are read (train, eval, corpus)."""
    formats = ", ".join(FORMATS)
    parser.add_argument(
        "--format",
        choices=list(FORMATS),
        metavar="FORMAT",
        help=f"format of bare corpus paths: {formats} (default: txt or jsonl by extension)",
    )
    parser.add_argument(
        "--encoding", help="text encoding of the corpus files, e.g. latin-1 (default: byte-order mark, else the format's own)"
    )
    parser.add_argument(
        "--convokit-paths",
        choices=["longest", "all"],
        default="longest",
        help="ConvoKit reply trees: one dialogue per conversation along its longest path, or every root-to-leaf path (default longest)",
    )
    parser.add_argument(
        "--skip-malformed", action="store_true", help="skip malformed corpus records (counted) instead of stopping at the first"
    )
    if mixture:
        parser.add_argument(
            "--corpus-weights",
            type=_weights,
            metavar="W1,W2,…",
            help="with several corpora: how often an epoch sees each one's windows (2: twice, 0.5: a fresh half each epoch)",
        )


def _add_decoding(parser: argparse.ArgumentParser, seed: int | None = None, seed_help: str | None = None) -> argparse._ArgumentGroup:
    from chatbot.inference.decoding import add_decoding_arguments

    group = add_decoding_arguments(parser)
    if seed_help is not None:
        group.add_argument("--seed", type=int, help=seed_help)
    elif seed is None:
        group.add_argument(
            "--seed",
            type=int,
            help="seed of the first reply and of every later reply's seed, so the same messages get the same replies (default: random; every reply's seed is stored)",
        )
    else:
        group.add_argument(
            "--seed", type=int, default=seed, help=f"seed of context sampling and replies; reply i uses seed + i (default {seed})"
        )
    group.add_argument("--context-turns", type=int, help="stored turns fed to the model as context (default: the model's max_turns - 1)")
    return group


def _add_config_flags(parser, cls: type, preset: bool) -> None:
    """One flag per `setting` field of a config dataclass: ``--name-with-dashes``, its type from the
    annotation (a bool is ``--x/--no-x``), its help from the field and its default. Every flag defaults to None,
    so a command sees which were given (None: the preset's value, else the field's, applies; a resumed run
    keeps its own); `preset` only says which default the help names."""
    hints = typing.get_type_hints(cls)
    in_presets = {name for sizes in PRESETS.values() for name in sizes}
    for field in flag_fields(cls):
        kind = next((t for t in typing.get_args(hints[field.name]) if t is not type(None)), hints[field.name])
        options = dict(field.metadata["options"])
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = kind
        value: object = field.default
        shown = "on" if value is True else "off" if value is False else f"{value:g}" if isinstance(value, float) else value
        default = "the preset's" if preset and field.name in in_presets else "none" if value is None else shown
        options.setdefault("metavar", {int: "N", float: "X"}.get(kind, "TEXT") if kind is not bool and "choices" not in options else None)
        if options["metavar"] is None:
            del options["metavar"]
        help_text = f"{field.metadata['help']} (default {default})".replace("%", "%%")
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, default=None, help=help_text, **options)


class _Parser(argparse.ArgumentParser):
    """argparse without abbreviated flags: `--max 5` is refused instead of read as whichever `--max-…` flag it
    prefixes (a flag added later would silently change what an old command line means). Every subcommand's
    parser is of this class too (argparse makes them of the parent's)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chatbot", description="Hierarchical recurrent dialogue models: train, chat, replay.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    chat = commands.add_parser("chat", help="chat in the terminal (every turn is saved)")
    chat.add_argument(
        "--model",
        help="model directory (default: $CHATBOT_MODEL, else the shipped storage/models/default, else the newest in storage/models/)",
    )
    chat.add_argument("--resume", type=int, metavar="ID", help="continue conversation ID")
    chat.add_argument(
        "--input",
        metavar="FILE",
        help="read one message (or /command) per line from FILE instead of the terminal; stdin from a file or pipe does the same",
    )
    chat.add_argument(
        "--output",
        choices=["text", "jsonl"],
        default="text",
        help="text: a you>/bot> transcript; jsonl: one JSON object per reply on stdout, notes on stderr (default text)",
    )
    _add_db(chat)
    _add_decoding(chat)

    train = commands.add_parser("train", help="train a model on a corpus")
    train.add_argument(
        "--corpus",
        action="append",
        help="corpus SPEC, repeat to mix: chitchat, chatterbot:LANG, db: (stored conversations; db:URL for another database), "
        "FORMAT:PATH (e.g. dailydialog:data/dd, cornell:data/cornell), FILE.txt or FILE.jsonl (default chitchat)",
    )
    _add_corpus_reading(train)
    train.add_argument(
        "--model",
        choices=list(MODEL_TYPES),
        help="architecture: lm (a plain RNN language model over the replies, no context: the baseline), seq2seq, hred, hran, vhred (default hred, or that of --init-from)",
    )
    train.add_argument("--out", required=True, help="model directory to write")
    train.add_argument("--preset", default="small", help="sizes: tiny (tests), small (CPU), base (GPU); default small")
    _add_config_flags(train, TrainConfig, preset=False)
    train.add_argument(
        "--distribute",
        choices=["none", "mirrored", "multi-worker"],
        default="none",
        help="mirrored: one replica per local GPU (tf.distribute, or keras.distribution.DataParallel under KERAS_BACKEND=jax); "
        "multi-worker: also the hosts TF_CONFIG names (TensorFlow); the global batch is split across replicas, the loss is one device's (default none)",
    )
    train.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="--distribute mirrored with no GPU: split the CPU into this many devices (testing; default 1)",
    )
    _add_config_flags(train.add_argument_group("model (default: the preset's)"), ModelConfig, preset=True)
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in --out (epoch and optimizer state)")

    evaluate = commands.add_parser("eval", help="perplexity and reply metrics of one or more models on a corpus split")
    evaluate.add_argument("--model", action="append", required=True, metavar="DIR", help="model directory; repeat for a side-by-side table")
    evaluate.add_argument("--corpus", default="chitchat", help="corpus SPEC (default chitchat)")
    _add_corpus_reading(evaluate, mixture=False)
    evaluate.add_argument("--split", default="test", choices=["train", "valid", "test"], help="split to evaluate (default test)")
    evaluate.add_argument("--contexts", type=int, default=200, help="contexts to generate replies for (default 200)")
    evaluate.add_argument(
        "--max-dialogues", type=int, metavar="N", help="read only the first N dialogues of the train and the evaluated split (quick runs)"
    )
    evaluate.add_argument(
        "--ngram-baseline",
        action="store_true",
        help="add an add-one unigram and an interpolated Kneser-Ney 3-gram row over the first model's tokens",
    )
    evaluate.add_argument("--output", metavar="FILE", help="JSON report (default storage/eval/eval-SPLIT-TIME.json)")
    evaluate.add_argument("--plot", metavar="FILE.png", help="also draw the models' perplexity and distinct-2 side by side as a PNG")
    _add_decoding(evaluate, seed=1234)

    pack = commands.add_parser("pack", help="copy a trained model for shipping: no optimizer state, float16 weights, perplexity checked")
    pack.add_argument("source", metavar="DIR", help="model directory written by `chatbot train`")
    pack.add_argument("--out", required=True, metavar="DIR", help="directory to write (must not hold a model)")
    pack.add_argument(
        "--float32",
        action="store_true",
        help="keep float32 weights (default: float16, half the bytes; refused if the perplexity changes by 1%% or more)",
    )
    pack.add_argument("--max-dialogues", type=int, help="measure the perplexities on the first N dialogues' valid split only (quick runs)")

    corpus = commands.add_parser("corpus", help="inspect, check, identify and convert corpora")
    corpus_actions = corpus.add_subparsers(dest="action", metavar="ACTION", required=True)
    stats = corpus_actions.add_parser("stats", help="dialogues, turns and tokens per split, of each corpus and of the mixture")
    stats.add_argument("specs", nargs="+", metavar="SPEC", help="corpus SPECs (several: a mixture)")
    stats.add_argument("--vocabulary-size", type=int, default=8000, help="tokenizer used for token counts (default 8000)")
    validate = corpus_actions.add_parser("validate", help="read every record; list the malformed ones as FILE:LINE")
    validate.add_argument("specs", nargs="+", metavar="SPEC", help="corpus SPECs")
    detect = corpus_actions.add_parser("detect", help="name the format of files or directories")
    detect.add_argument("paths", nargs="+", metavar="PATH", help="corpus files or directories")
    convert = corpus_actions.add_parser("convert", help="write a corpus as jsonl (everything kept), txt or parlai")
    convert.add_argument("spec", metavar="SPEC", help="corpus SPEC")
    convert.add_argument("out", metavar="OUT", help="file to write")
    convert.add_argument("--to", choices=["jsonl", "txt", "parlai"], default="jsonl", help="output format (default jsonl)")
    convert.add_argument("--max-dialogues", type=int, help="write only the first N dialogues")
    for sub, mixture in ((stats, True), (validate, False), (convert, False)):
        _add_corpus_reading(sub, mixture)

    sessions = commands.add_parser("sessions", help="list, show, rename, delete and export stored conversations")
    _add_db(sessions)
    actions = sessions.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="most recent conversations first (the default action)")
    listing.add_argument("--limit", type=int, default=50, help="most recent N (default 50)")
    listing.add_argument("--search", metavar="TEXT", help="only conversations whose title or any message contains TEXT (any case)")
    show = actions.add_parser("show", help="print one conversation (as `chatbot replay ID`)")
    show.add_argument("id", type=int, help="conversation id")
    show.add_argument("--all-branches", action="store_true", help="also print the alternatives made by /retry and /edit")
    rename = actions.add_parser("rename", help="change a conversation's title")
    rename.add_argument("id", type=int, help="conversation id")
    rename.add_argument("title", nargs="+", help="the new title")
    remove = actions.add_parser("delete", help="delete a conversation with all its branches (asks first)")
    remove.add_argument("id", type=int, help="conversation id")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    export = actions.add_parser("export", help="write conversations (their active paths) as JSONL, Markdown or text")
    export.add_argument("ids", type=int, nargs="*", metavar="ID", help="conversation ids (or --all)")
    export.add_argument("--all", action="store_true", help="every stored conversation")
    export.add_argument(
        "--format",
        choices=["jsonl", "md", "txt"],
        default="jsonl",
        help="jsonl: a corpus `chatbot train` reads, speakers kept (default); md: readable; txt: the plain-text corpus format",
    )
    export.add_argument("--output", metavar="FILE", help="write to FILE, readable by its owner only (default: standard output)")
    for sub in (listing, show, rename, remove, export):
        _add_db(sub, nested=True)

    replay = commands.add_parser("replay", help="print, regenerate, or re-answer stored conversations")
    replay.add_argument("ids", type=int, nargs="*", metavar="ID", help="conversation ids (see `chatbot sessions list`)")
    replay.add_argument("--all", action="store_true", help="every stored conversation")
    replay.add_argument("--all-branches", action="store_true", help="also print the alternatives made by /retry and /edit")
    replay.add_argument(
        "--regenerate",
        action="store_true",
        help="re-run every bot turn with its stored model, settings and seed, and report whether each reply is identical",
    )
    replay.add_argument(
        "--model", metavar="DIR", help="answer the stored histories with this model and show its replies beside the stored ones"
    )
    replay.add_argument("--format", choices=["md", "json"], help="also write the comparison to a file in this format")
    replay.add_argument("--output", metavar="FILE", help="where --format writes (default storage/replays/replay-TIME.FORMAT)")
    _add_db(replay)
    _add_decoding(
        replay, seed_help="seed of every re-answered reply (default: each stored reply's own seed, so settings are compared on equal terms)"
    )

    _add_serve(commands)
    return parser


def _add_serve(commands) -> None:
    from chatbot.serve.settings import ServeConfig

    d = ServeConfig()
    serve = commands.add_parser("serve", help="serve the bot over HTTP: OpenAI's Chat Completions and a conversation API")
    serve.add_argument(
        "--model", metavar="DIR", help="model directory (default: as `chatbot chat`); `scripted`: a null model for load tests"
    )
    _add_db(serve)
    serve.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host}; any other needs --api-key-file)")
    serve.add_argument("--port", type=int, default=d.port, help=f"TCP port (default {d.port})")
    serve.add_argument("--workers", type=int, default=d.workers, help=f"worker processes, each with its own model (default {d.workers})")
    serve.add_argument(
        "--api-key-file", metavar="FILE", help="lines of name:key; every route but /health then needs Authorization: Bearer KEY"
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages from ORIGIN call the API (repeatable; default: none)",
    )
    serve.add_argument("--context-turns", type=int, help="stored turns fed to the model as context (default: the model's max_turns - 1)")
    serve.add_argument(
        "--batch-window-ms",
        type=float,
        default=d.batch_window_ms,
        help=f"wait this long to decode concurrent requests as one batch; 0 = off (default {d.batch_window_ms:g})",
    )
    serve.add_argument("--max-batch", type=int, default=d.max_batch, help=f"most requests in one batch (default {d.max_batch})")
    serve.add_argument(
        "--max-queue", type=int, default=d.max_queue, help=f"requests a worker holds at once; more get 503 (default {d.max_queue})"
    )
    serve.add_argument(
        "--busy-wait",
        type=float,
        default=d.busy_wait,
        help=f"seconds a request waits for its busy conversation; then 409 (default {d.busy_wait:g})",
    )
    serve.add_argument(
        "--max-body-bytes", type=int, default=d.max_body_bytes, help=f"largest request body; larger get 413 (default {d.max_body_bytes})"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    skip_optional_imports()  # before anything imports TensorFlow: about 1.2 CPU s less per start (lean_import)
    with native_logs_silenced():
        return _run(args)


def _run(args) -> int:
    try:
        handler = {
            "chat": commands.cmd_chat,
            "train": commands.cmd_train,
            "eval": commands.cmd_eval,
            "corpus": commands.cmd_corpus,
            "pack": commands.cmd_pack,
            "sessions": commands.cmd_sessions,
            "replay": commands.cmd_replay,
            "serve": commands.cmd_serve,
        }[args.command]
        return handler(args) or 0
    except ChatbotError as exc:
        print(f"chatbot: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("chatbot: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `chatbot sessions export --all | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
