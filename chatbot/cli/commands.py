"""The handlers of the `chatbot` commands: one `cmd_NAME(args) -> exit status` per command.

Each imports what it needs inside the function (TensorFlow only where a model is
trained, evaluated or loaded), so `chatbot --help` and `chatbot sessions` start fast.
They raise `ChatbotError`s; `chatbot.cli.parser.main` prints them as one line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from chatbot.config import TrainConfig
from chatbot.errors import CheckpointError, ConfigError


def cmd_train(args) -> int:
    from chatbot.api import train
    from chatbot.config import ModelConfig, flag_values

    sizes = {name: value for name, value in flag_values(args, ModelConfig).items() if value is not None}  # None: the preset's
    settings = {
        **sizes,
        **{name: value for name, value in flag_values(args, TrainConfig).items() if value is not None},  # None: not given
        "corpus_weights": args.corpus_weights,
        "corpus_format": args.format,
        "encoding": args.encoding,
        "convokit_paths": args.convokit_paths,
        "skip_malformed": args.skip_malformed,
    }
    if args.kl_anneal_steps is not None:  # a fixed number of steps replaces the share of the run
        settings["kl_anneal_fraction"] = None
    corpus = tuple(args.corpus or ["chitchat"])
    try:
        result = train(
            corpus,
            out=args.out,
            model=args.model,
            preset=args.preset,
            resume=args.resume,
            distribute=args.distribute,
            replicas=args.replicas,
            **settings,
        )
    except KeyboardInterrupt:
        from chatbot.paths import program

        print(f"chatbot: training interrupted; continue with: {program()} train --out {args.out} --resume", file=sys.stderr)
        return 130
    perplexity = f"{result.best_val_perplexity:.2f}" if result.best_val_perplexity else "n/a"
    whole = result.batches_run % max(result.epoch_batches, 1) == 0
    counts = f"{result.batches_run} batch{'' if result.batches_run == 1 else 'es'}, {result.target_tokens} target tokens"
    if result.cut_at:
        counts += f"; stopped by --max-minutes in epoch {result.cut_at[0]} after batch {result.cut_at[1]} of {result.epoch_batches}"
    elif result.stopped_by_budget:
        counts += "; stopped by --max-minutes"
    done = f"trained {result.epochs_trained:{'.0f' if whole else '.3g'}} epoch(s) in {result.seconds / 60:.1f} min ({counts})"
    print(f"{done}; best validation perplexity {perplexity}; model in {result.out_dir}")
    return 0


def cmd_eval(args) -> int:
    import json
    import time

    from chatbot.api import evaluate
    from chatbot.evaluation.reports import print_eval_table
    from chatbot.inference.decoding import decoding_from_args
    from chatbot.paths import storage_dir

    report = evaluate(
        args.model,
        args.corpus,
        split=args.split,
        contexts=args.contexts,
        context_turns=args.context_turns,
        ngram_baseline=args.ngram_baseline,
        max_dialogues=args.max_dialogues,
        decoding=decoding_from_args(args),
        seed=args.seed,
        log=lambda line: print(line, file=sys.stderr),
        corpus_format=args.format,
        encoding=args.encoding,
        convokit_paths=args.convokit_paths,
        skip_malformed=args.skip_malformed,
    )
    output = Path(args.output) if args.output else storage_dir() / "eval" / f"eval-{args.split}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    print_eval_table(report.rows)
    print(f"report: {output}")
    if args.plot:
        from chatbot.training.plots import eval_comparison

        print(f"plot: {eval_comparison(report.rows, Path(args.plot))}")
    return 0


def cmd_pack(args) -> int:
    from chatbot.evaluation.pack import PACK_FILENAME, pack_model

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
    from chatbot.corpus import Problems, ReadOptions, report, resolve

    if args.action == "detect":
        results = [report.detect_line(Path(path)) for path in args.paths]
        print("\n".join(line for line, _ in results))
        return 0 if all(found for _, found in results) else 1
    options = ReadOptions(args.encoding, args.convokit_paths)
    if args.action == "convert":
        print(report.convert(args.spec, args.format, options, args.to, Path(args.out), args.max_dialogues))
        return 0
    sources = [resolve(spec, args.format, options) for spec in args.specs]
    if args.action == "validate":
        clean = True
        for source in sources:
            lines, ok = report.validate_lines(source)
            print("\n".join(lines))
            clean = clean and ok
        return 0 if clean else 1
    from chatbot.paths import cache_dir

    if args.corpus_weights is not None and len(args.corpus_weights) != len(sources):
        raise ConfigError(f"--corpus-weights needs one number per SPEC ({len(sources)}), got {len(args.corpus_weights)}")
    problems = Problems(strict=not args.skip_malformed)
    for line in report.stats_lines(sources, args.corpus_weights, args.vocabulary_size, cache_dir(), problems):
        print(line)
    return 0


def cmd_chat(args) -> int:
    from chatbot.chat.run import run_chat

    return run_chat(args)


def cmd_sessions(args) -> int:
    from chatbot.chat.views import session_lines, transcript_lines
    from chatbot.dialogue.export import write_export
    from chatbot.storage import open_store

    action = args.action or "list"
    limit = getattr(args, "limit", 50)
    if limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    if action == "export" and args.all == bool(args.ids):
        raise ConfigError("export: give conversation ids or --all (not both)")
    store = open_store(args.db, create=False)  # the checks that need no database come first
    if store.upgrade_note:
        print(store.upgrade_note, file=sys.stderr)
    if action == "list":
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
        if not args.yes and not _confirm(
            f"delete conversation {args.id} ({conversation.title or 'untitled'}, {turns} turns with all branches)? [y/N] "
        ):
            print(f"conversation {args.id} kept", file=sys.stderr)
            return 1
        deleted = store.delete_conversation(args.id)
        print(f"deleted conversation {args.id} ({deleted} turns)")
    elif action == "export":
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


def cmd_replay(args, log: Callable[[str], None] | None = None) -> int:
    """`chatbot replay`: print conversations, regenerate them (--regenerate), or compare them
    against another model or settings (--model DIR, decoding flags, --format).

    Returns the exit status: with --regenerate, 1 unless every reply is identical.

    Raises:
        ConfigError: conflicting or missing options.
        ConversationNotFoundError: an unknown id (before any model loads).
        CheckpointError: --model cannot be loaded.
    """
    import sys
    import time

    from chatbot.chat.views import transcript_lines
    from chatbot.evaluation.replay import (
        ModelCache,
        compare,
        comparison_lines,
        comparison_report,
        comparison_summary,
        regeneration_lines,
        summary_lines,
    )
    from chatbot.evaluation.reports import write_report
    from chatbot.inference.decoding import DecodingConfig, decoding_from_args, describe
    from chatbot.storage import Conversation, open_store

    log = log or (lambda line: print(line, file=sys.stderr))
    if args.all == bool(args.ids):
        raise ConfigError("replay: give conversation ids or --all (not both)")
    decoding = decoding_from_args(args)
    comparing = (
        args.model is not None
        or args.format is not None
        or decoding != DecodingConfig()
        or args.seed is not None
        or args.context_turns is not None
    )
    if args.regenerate and comparing:
        raise ConfigError("--regenerate uses the stored model and settings; leave out --model, --format and decoding flags")
    ids = None if args.all else args.ids
    if args.regenerate:
        from chatbot.api import replay

        replayed = replay(ids, args.db, all_branches=args.all_branches, log=log)
        for conversation in replayed.conversations:
            print("\n".join(regeneration_lines(conversation, replayed.results[conversation.id])))
        return 0 if replayed.identical else 1
    store = open_store(args.db, create=False)
    if store.upgrade_note:
        print(store.upgrade_note, file=sys.stderr)
    conversations = store.conversations(ids)  # unknown ids fail here, before any model loads
    if not comparing:
        blocks = ["\n".join(transcript_lines(store.transcript(c.id, args.all_branches))) for c in conversations]
        sys.stdout.write("\n\n".join(blocks) + "\n")
        return 0

    records = store.models()
    if args.model is not None:
        from chatbot.inference.checkpoint import load_checkpoint
        from chatbot.inference.responder import Responder

        checkpoint = load_checkpoint(args.model)
        responder = Responder(checkpoint, args.context_turns)
        label = f"model {checkpoint.path.name} ({checkpoint.model_id[:8]}) · {describe(decoding)}"
        responder_for = lambda conversation: responder  # noqa: E731
    else:
        models = ModelCache(log)
        label = f"the stored model · {describe(decoding)}"

        def responder_for(conversation: Conversation):
            record = records.get(conversation.model_id) if conversation.model_id is not None else None
            checkpoint = models.checkpoint(record) if record is not None else f"conversation {conversation.id} has no stored model"
            if isinstance(checkpoint, str):
                raise CheckpointError(f"{checkpoint}; or pass --model DIR")
            return models.responder(checkpoint, args.context_turns or checkpoint.model_config.max_turns - 1)

    compared = compare(store, ids, responder_for, decoding, args.seed, log)
    print("\n".join(comparison_lines(compared, label) + [""] + summary_lines(comparison_summary(compared))))
    if args.format:
        from chatbot.paths import storage_dir

        report = comparison_report(compared, label, decoding, records)
        output = Path(args.output) if args.output else storage_dir() / "replays" / f"replay-{time.strftime('%Y%m%d-%H%M%S')}.{args.format}"
        write_report(report, args.format, output)
        print(f"report: {output}")
    return 0


def cmd_serve(args) -> int:
    from chatbot.serve.server import run_server

    return run_server(args)
