"""The `chatbot` command line. User errors become one line on stderr and a nonzero exit."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from chatbot.config import LR_SCHEDULES, MODEL_TYPES, TrainConfig
from chatbot.errors import ChatbotError, CheckpointError, ConfigError
from chatbot.native_logs import native_logs_silenced

# Quiet TensorFlow's C++ logging after start-up (start-up lines ignore it: see native_logs).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _add_db(parser: argparse.ArgumentParser, nested: bool = False) -> None:
    # A nested subcommand must not reset a --db given before it (argparse copies subparser defaults over).
    parser.add_argument("--db", default=argparse.SUPPRESS if nested else None, help="SQLAlchemy database URL (default: sqlite:///storage/chatbot.db)")


def _add_decoding(parser: argparse.ArgumentParser, seed: int | None = None) -> argparse._ArgumentGroup:
    from chatbot.decoding import add_decoding_arguments

    group = add_decoding_arguments(parser)
    if seed is None:
        group.add_argument("--seed", type=int, help="seed of the first reply (default: random; every reply's seed is stored)")
    else:
        group.add_argument("--seed", type=int, default=seed, help=f"seed of context sampling and replies; reply i uses seed + i (default {seed})")
    group.add_argument("--context-turns", type=int, help="stored turns fed to the model as context (default: the model's max_turns - 1)")
    return group


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatbot", description="Hierarchical recurrent dialogue models: train, chat, replay.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    chat = commands.add_parser("chat", help="chat in the terminal (every turn is saved)")
    chat.add_argument("--model", help="model directory (default: $CHATBOT_MODEL, else the shipped storage/models/default, else the newest in storage/models/)")
    chat.add_argument("--resume", type=int, metavar="ID", help="continue conversation ID")
    _add_db(chat)
    _add_decoding(chat)

    train = commands.add_parser("train", help="train a model on a corpus")
    train.add_argument("--corpus", default="chitchat", help="corpus SPEC: chitchat, chatterbot:LANG, db: (stored conversations; db:URL for another database), FILE.txt or FILE.jsonl (default chitchat)")
    train.add_argument("--format", choices=["txt", "jsonl"], help="corpus file format (default: from the extension)")
    train.add_argument("--model", choices=list(MODEL_TYPES), help="architecture: lm (a plain RNN language model over the replies, no context: the baseline), seq2seq, hred, vhred (default hred, or that of --init-from)")
    train.add_argument("--out", required=True, help="model directory to write")
    train.add_argument("--preset", default="small", help="sizes: tiny (tests), small (CPU), base (GPU); default small")
    train.add_argument("--epochs", type=int, default=10, help="total epochs (default 10)")
    train.add_argument("--batch-size", type=int, default=64, help="dialogue windows per batch (default 64)")
    train.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate, help=f"Adam step size, the peak of the schedule (default {TrainConfig.learning_rate:g}, chosen by benchmarks/learning_curve.py)")
    train.add_argument("--vocabulary-size", type=int, default=8000, help="SentencePiece vocabulary bound (default 8000)")
    train.add_argument("--max-dialogues", type=int, help="use only the first N dialogues (quick runs)")
    train.add_argument("--max-minutes", type=float, help="stop after this many minutes; the last epoch is validated and saved")
    train.add_argument("--patience", type=int, default=2, help="early stopping: epochs without improvement (default 2)")
    train.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=TrainConfig.lr_schedule, help=f"constant, or cosine decay to 10%% over --epochs (default {TrainConfig.lr_schedule})")
    train.add_argument("--precision", choices=["float32", "mixed_bfloat16"], default="float32", help="training arithmetic: mixed_bfloat16 computes in bfloat16 with float32 weights, faster on CPUs with AMX/AVX512-BF16 and recent GPUs (default float32; replies always decode in float32)")
    train.add_argument("--length-groups", type=int, default=4, help="HRED/VHRED: run each RNN over this many length-sorted chunks of a batch, so short utterances are not padded to the longest (default 4; 1 turns it off; the loss is the same)")
    train.add_argument("--clipnorm", type=float, default=1.0, help="clip the gradient's global L2 norm to this (default 1.0; 0 = off)")
    train.add_argument("--warmup-steps", type=int, default=0, help="updates over which the learning rate rises linearly from 0 (default 0)")
    train.add_argument("--init-from", metavar="DIR", help="start from a trained model: the same architecture fine-tunes all its weights; another (e.g. VHRED from HRED) starts from its embedding and encoders. Its tokenizer is reused")
    sizes = train.add_argument_group("model (default: the preset's)")
    sizes.add_argument("--cell", choices=["gru", "lstm"], help="RNN cell (default gru)")
    sizes.add_argument("--bidirectional", action="store_true", default=None, help="bidirectional utterance encoder")
    for name, what in (("embedding", "token embedding"), ("hidden", "utterance encoder RNN"), ("context", "context RNN"), ("decoder", "decoder RNN"), ("latent", "VHRED latent variable")):
        sizes.add_argument(f"--{name}-dim", type=int, help=f"units of the {what}")
    sizes.add_argument("--dropout", type=float, help="dropout on embeddings and decoder outputs (default 0.1)")
    sizes.add_argument("--tie-embeddings", action=argparse.BooleanOptionalAction, help="score outputs against the input embedding table (default on)")
    sizes.add_argument("--scale-embeddings", action=argparse.BooleanOptionalAction, help="embeddings start N(0, 1/dim) and enter the RNNs times sqrt(dim) (default on)")
    sizes.add_argument("--center-context", action=argparse.BooleanOptionalAction, help="seq2seq/hred/vhred: the decoder sees the context vector minus its running mean (default on)")
    sizes.add_argument("--attention", choices=["none", "additive", "dot"], help="seq2seq: attention over the source (default none)")
    sizes.add_argument("--source-turns", type=int, help="seq2seq: turns flattened into the source (default 1, the previous utterance)")
    sizes.add_argument("--max-source-tokens", type=int, help="seq2seq: longest flattened source in tokens (default 96)")
    sizes.add_argument("--kl-anneal-steps", type=int, help="vhred: optimizer steps for the KL weight to rise from 0 to 1 (default 2000)")
    sizes.add_argument("--word-dropout", type=float, help="vhred: share of decoder inputs replaced by the unknown token (default 0.25)")
    sizes.add_argument("--bow-weight", type=float, help="vhred: weight of the bag-of-words loss, 0 = off (default 1.0)")
    train.add_argument("--seed", type=int, default=1234, help="random seed (default 1234)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in --out (epoch and optimizer state)")

    evaluate = commands.add_parser("eval", help="perplexity and reply metrics of one or more models on a corpus split")
    evaluate.add_argument("--model", action="append", required=True, metavar="DIR", help="model directory; repeat for a side-by-side table")
    evaluate.add_argument("--corpus", default="chitchat", help="corpus SPEC (default chitchat)")
    evaluate.add_argument("--format", choices=["txt", "jsonl"], help="corpus file format (default: from the extension)")
    evaluate.add_argument("--split", default="test", choices=["train", "valid", "test"], help="split to evaluate (default test)")
    evaluate.add_argument("--contexts", type=int, default=200, help="contexts to generate replies for (default 200)")
    evaluate.add_argument("--ngram-baseline", action="store_true", help="add an add-one unigram and an interpolated Kneser-Ney 3-gram row over the first model's tokens")
    evaluate.add_argument("--output", metavar="FILE", help="JSON report (default storage/eval/eval-SPLIT-TIME.json)")
    evaluate.add_argument("--plot", metavar="FILE.png", help="also draw the models' perplexity and distinct-2 side by side as a PNG")
    _add_decoding(evaluate, seed=1234)

    pack = commands.add_parser("pack", help="copy a trained model for shipping: no optimizer state, float16 weights, perplexity checked")
    pack.add_argument("source", metavar="DIR", help="model directory written by `chatbot train`")
    pack.add_argument("--out", required=True, metavar="DIR", help="directory to write (must not hold a model)")
    pack.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16, half the bytes; refused if the perplexity changes by 1%% or more)")
    pack.add_argument("--max-dialogues", type=int, help="measure the perplexities on the first N dialogues' valid split only (quick runs)")

    corpus = commands.add_parser("corpus", help="inspect a corpus")
    corpus.add_argument("action", choices=["stats", "validate"], help="stats: counts per split; validate: parse and report")
    corpus.add_argument("spec", help="corpus SPEC")
    corpus.add_argument("--format", choices=["txt", "jsonl"], help="corpus file format (default: from the extension)")
    corpus.add_argument("--vocabulary-size", type=int, default=8000, help="tokenizer used for token counts (default 8000)")

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
    export.add_argument("--format", choices=["jsonl", "md", "txt"], default="jsonl", help="jsonl: a corpus `chatbot train` reads, speakers kept (default); md: readable; txt: the plain-text corpus format")
    export.add_argument("--output", metavar="FILE", help="write to FILE, readable by its owner only (default: standard output)")
    for sub in (listing, show, rename, remove, export):
        _add_db(sub, nested=True)

    replay = commands.add_parser("replay", help="print, regenerate, or re-answer stored conversations")
    replay.add_argument("ids", type=int, nargs="*", metavar="ID", help="conversation ids (see `chatbot sessions list`)")
    replay.add_argument("--all", action="store_true", help="every stored conversation")
    replay.add_argument("--all-branches", action="store_true", help="also print the alternatives made by /retry and /edit")
    replay.add_argument("--regenerate", action="store_true", help="re-run every bot turn with its stored model, settings and seed, and report whether each reply is identical")
    replay.add_argument("--model", metavar="DIR", help="answer the stored histories with this model and show its replies beside the stored ones")
    replay.add_argument("--format", choices=["md", "json"], help="also write the comparison to a file in this format")
    replay.add_argument("--output", metavar="FILE", help="where --format writes (default storage/replays/replay-TIME.FORMAT)")
    _add_db(replay)
    _add_decoding(replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with native_logs_silenced():
        return _run(args)


def _run(args) -> int:
    try:
        handler = {
            "chat": cmd_chat,
            "train": cmd_train,
            "eval": cmd_eval,
            "corpus": cmd_corpus,
            "pack": cmd_pack,
            "sessions": cmd_sessions,
            "replay": cmd_replay,
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


def cmd_train(args) -> int:
    from chatbot.checkpoint import read_config
    from chatbot.config import model_config
    from chatbot.training.trainer import train

    architecture = args.model or "hred"
    if args.model is None and args.init_from and not args.resume:
        try:
            architecture = read_config(Path(args.init_from))[0].model
        except CheckpointError as exc:
            raise CheckpointError(f"--init-from: {exc}") from None
    config = model_config(
        args.preset,
        model=architecture,
        cell=args.cell,
        bidirectional=args.bidirectional,
        embedding_dim=args.embedding_dim,
        hidden_dim=args.hidden_dim,
        context_dim=args.context_dim,
        decoder_dim=args.decoder_dim,
        latent_dim=args.latent_dim,
        dropout=args.dropout,
        tie_embeddings=args.tie_embeddings,
        scale_embeddings=args.scale_embeddings,
        center_context=args.center_context,
        attention=args.attention,
        source_turns=args.source_turns,
        max_source_tokens=args.max_source_tokens,
        kl_anneal_steps=args.kl_anneal_steps,
        word_dropout=args.word_dropout,
        bow_weight=args.bow_weight,
    )
    train_config = TrainConfig(
        corpus=args.corpus,
        corpus_format=args.format,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lr_schedule=args.lr_schedule,
        clipnorm=args.clipnorm,
        warmup_steps=args.warmup_steps,
        init_from=args.init_from,
        patience=args.patience,
        vocabulary_size=args.vocabulary_size,
        max_dialogues=args.max_dialogues,
        max_minutes=args.max_minutes,
        seed=args.seed,
        precision=args.precision,
        length_groups=args.length_groups,
    )
    try:
        result = train(Path(args.out), config, train_config, resume=args.resume)
    except KeyboardInterrupt:
        print(f"chatbot: training interrupted; continue with: chatbot train --out {args.out} --resume", file=sys.stderr)
        return 130
    budget = " (stopped by --max-minutes)" if result.stopped_by_budget else ""
    perplexity = f"{result.best_val_perplexity:.2f}" if result.best_val_perplexity else "n/a"
    print(
        f"trained {result.epochs_run} epoch(s) in {result.seconds / 60:.1f} min{budget}; "
        f"best validation perplexity {perplexity}; model in {result.out_dir}"
    )
    return 0


def cmd_eval(args) -> int:
    import json
    import time

    from chatbot.decoding import decoding_from_args
    from chatbot.evaluation import EvalConfig, EvalData, evaluate_model, ngram_row
    from chatbot.paths import storage_dir
    from chatbot.transcript import print_eval_table

    if args.contexts < 0:
        raise ConfigError(f"--contexts must be >= 0, got {args.contexts}")
    config = EvalConfig(
        corpus=args.corpus,
        split=args.split,
        corpus_format=args.format,
        num_contexts=args.contexts,
        context_turns=args.context_turns,
        seed=args.seed,
    )
    decoding = decoding_from_args(args)
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    data = EvalData.load(config)
    rows = [evaluate_model(path, config, decoding, data, log) for path in args.model]
    if args.ngram_baseline:
        from chatbot.checkpoint import load_checkpoint

        first = load_checkpoint(args.model[0])
        rows[:0] = [ngram_row(first, config, data, order=1, log=log), ngram_row(first, config, data, log=log)]
    output = Path(args.output) if args.output else storage_dir() / "eval" / f"eval-{args.split}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {"corpus": args.corpus, "split": args.split, "seed": args.seed, "decoding": decoding.to_dict(), "rows": rows}
    output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print_eval_table(rows)
    print(f"report: {output}")
    if args.plot:
        from chatbot.plots import eval_comparison

        print(f"plot: {eval_comparison(rows, Path(args.plot))}")
    return 0


def cmd_pack(args) -> int:
    from chatbot.pack import PACK_FILENAME, pack_model

    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    report = pack_model(args.source, args.out, float16=not args.float32, max_dialogues=args.max_dialogues, log=log)
    check = report["perplexity"]
    print(
        f"packed {args.source} → {args.out}: {report['bytes']['source'] / 1e6:.1f} MB → {report['bytes']['packed'] / 1e6:.1f} MB; "
        f"{check['split']} perplexity {check['source']['value']} → {check['packed']['value']} ({report['dtype']}), "
        f"{check['change']:+.3%}; model id {report['model_id']}; checksums in {Path(args.out) / PACK_FILENAME}"
    )
    return 0


def cmd_corpus(args) -> int:
    from chatbot.corpus import SPLITS, load_corpus

    corpus = load_corpus(args.spec, args.format)
    if args.action == "validate":
        print(f"{args.spec}: ok, {len(corpus.dialogues)} dialogues, {sum(len(d.turns) for d in corpus.dialogues)} turns")
        return 0
    from chatbot.tokenizer import Tokenizer

    tokenizer = Tokenizer.train([t.text for d in corpus.split("train") or corpus.dialogues for t in d.turns], args.vocabulary_size)
    print(f"corpus {args.spec} (tokens: SentencePiece, {tokenizer.vocabulary_size} pieces trained on the train split)")
    print(f"{'split':<6} {'dialogues':>10} {'turns':>10} {'tokens':>12} {'tokens/turn':>12}")
    for name in SPLITS:
        dialogues = corpus.split(name)
        texts = [t.text for d in dialogues for t in d.turns]
        tokens = sum(len(ids) for ids in tokenizer.encode_batch(texts)) if texts else 0
        per_turn = tokens / len(texts) if texts else 0.0
        print(f"{name:<6} {len(dialogues):>10} {len(texts):>10} {tokens:>12} {per_turn:>12.1f}")
    return 0


def cmd_chat(args) -> int:
    from chatbot.repl import run_chat

    return run_chat(args)


def cmd_sessions(args) -> int:
    from chatbot.storage import open_store
    from chatbot.transcript import session_lines, transcript_lines, write_export

    action = args.action or "list"
    store = open_store(args.db)
    if store.upgrade_note:
        print(store.upgrade_note, file=sys.stderr)
    if action == "list":
        limit = getattr(args, "limit", 50)
        if limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {limit}")
        search = getattr(args, "search", None)
        print("\n".join(session_lines(store.list_conversations(limit, search=search), search)))
    elif action == "show":
        print("\n".join(transcript_lines(store.transcript(args.id, args.all_branches))))
    elif action == "rename":
        try:
            conversation = store.rename_conversation(args.id, " ".join(args.title))
        except ValueError as exc:
            raise ConfigError(f"rename: {exc}") from None
        print(f"conversation {conversation.id} is now titled: {conversation.title}")
    elif action == "delete":
        conversation = store.get_conversation(args.id)
        turns = len(store.tree(args.id))
        if not args.yes and not _confirm(f"delete conversation {args.id} ({conversation.title or 'untitled'}, {turns} turns with all branches)? [y/N] "):
            print(f"conversation {args.id} kept", file=sys.stderr)
            return 1
        deleted = store.delete_conversation(args.id)
        print(f"deleted conversation {args.id} ({deleted} turns)")
    elif action == "export":
        if args.all == bool(args.ids):
            raise ConfigError("export: give conversation ids or --all (not both)")
        count = write_export(store, None if args.all else args.ids, args.format, args.output)
        if args.output:
            print(f"exported {count} conversation(s) as {args.format} to {args.output}", file=sys.stderr)
    return 0


def _confirm(question: str) -> bool:
    """Ask on the terminal; anything but y/yes (or end of input) means no."""
    try:
        answer = input(question)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def cmd_replay(args) -> int:
    from chatbot.replay import run_replay

    return run_replay(args)
