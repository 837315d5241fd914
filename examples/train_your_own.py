"""Train a model on your own dialogues (JSON lines) and compare it with a Kneser-Ney 3-gram on the same pieces.

    python examples/train_your_own.py --corpus my_dialogues.jsonl --out storage/models/mine [--minutes 10]

Each line of the file is one dialogue: {"turns": ["hi!", "hello, how are you?", ...]} (or a list of
turns, or objects with "speaker" and "text"; docs/corpora.md has the format). Without --corpus this
script writes such a file from the bundled ChatterBot English corpus first, to show the format.
"""

import argparse
import json
from pathlib import Path

import chatbot


def write_sample(path: Path) -> None:
    """Some dialogues as JSON lines: the format `--corpus FILE.jsonl` reads."""
    with path.open("w", encoding="utf-8") as out:
        for dialogue in chatbot.corpus.load("chatterbot:english"):
            out.write(json.dumps({"id": dialogue.id, "turns": [turn.text for turn in dialogue.turns]}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", help="a JSONL file of dialogues (default: one written from chatterbot:english)")
    parser.add_argument("--out", default="storage/models/mine", help="the model directory to write")
    parser.add_argument("--preset", default="small", help="sizes: tiny, small, base")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=10.0, help="stop training after this long")
    parser.add_argument("--vocabulary-size", type=int, default=2000)
    parser.add_argument("--contexts", type=int, default=50, help="test contexts to generate replies for (metrics)")
    args = parser.parse_args()

    corpus = args.corpus
    if corpus is None:
        corpus = str(Path(args.out).with_suffix(".jsonl"))
        Path(corpus).parent.mkdir(parents=True, exist_ok=True)
        write_sample(Path(corpus))
        print(f"wrote {corpus}")

    result = chatbot.train(
        corpus,
        out=args.out,
        model="hred",
        preset=args.preset,
        epochs=args.epochs,
        max_minutes=args.minutes,
        vocabulary_size=args.vocabulary_size,
        log=lambda line: None,  # the progress lines
        verbose=0,  # Keras's progress bar
    )
    print(f"trained {result.epochs_run} epoch(s) in {result.seconds:.0f} s into {result.out_dir}")

    # Both scored on the test split of the same file, over the model's own SentencePiece pieces.
    report = chatbot.evaluate(args.out, corpus, contexts=args.contexts, ngram_baseline=True)
    for name, perplexity in report.perplexity().items():
        print(f"{name:>10}  test perplexity {perplexity:8.1f}")
    model, ngram = report.perplexity()[Path(args.out).name], report.perplexity()["kn-3gram"]
    print("the model beats the 3-gram" if model < ngram else "the 3-gram still wins: train longer, or on more dialogues")
    print("it says:", chatbot.load(args.out).reply(["hi! how are you?"], seed=0).text)


if __name__ == "__main__":
    main()
