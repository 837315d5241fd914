"""Fine-tune a model on stored conversations with Keras's own `fit`, save it, and chat with the result.

    python examples/fine_tune.py --db storage/chatbot.db --out storage/models/tuned [--epochs 2]

`chatbot.load` gives a `keras.Model`; `chatbot.training.dialogue_batches` turns dialogues into the
batches it trains on (teacher forcing over every turn after a window's first); `db:URL` reads the
conversations stored by `chatbot chat`, `chatbot serve` or `Bot.conversation`, each along its active path.
A database without conversations gets three short ones first, so the script always has data.
"""

import argparse
import shutil
from pathlib import Path

import keras

import chatbot

DEMO = [["hello! how are you?", "thanks for asking"], ["what do you study?", "history, mostly"], ["do you like music?", "yes, I do"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="storage/chatbot.db", help="the SQLite file holding the conversations")
    parser.add_argument("--model", default="default", help="the model to start from (default: the shipped one)")
    parser.add_argument("--out", default="storage/models/tuned", help="the model directory to write")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    args = parser.parse_args()

    bot = chatbot.load(args.model)
    url = f"sqlite:///{Path(args.db).resolve()}"
    dialogues = []
    if Path(args.db).exists():  # reading creates no database
        try:
            dialogues = list(chatbot.corpus.load(f"db:{url}"))
        except chatbot.errors.CorpusError:  # no conversation with a reply yet
            pass
    if not dialogues:
        for messages in DEMO:
            with bot.conversation(db=args.db) as chat:
                for message in messages:
                    chat.say(message, seed=0)
        dialogues = list(chatbot.corpus.load(f"db:{url}"))
        print(f"{args.db} held no conversations: stored {len(dialogues)} short ones to train on")
    turns = sum(len(d.turns) for d in dialogues)
    print(f"fine-tuning {bot.name} on {len(dialogues)} stored conversations ({turns} turns)")

    batches = chatbot.training.dialogue_batches(
        dialogues, bot.tokenizer, batch_size=16, max_turns=bot.config.max_turns, max_utterance_length=bot.config.max_utterance_length
    )
    bot.model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))  # the models compute their own loss
    history = bot.model.fit(batches, epochs=args.epochs, verbose=0, shuffle=False)  # the batches come shuffled
    losses = ", ".join(f"{loss:.3f}" for loss in history.history["loss"])
    print(f"loss per epoch (nats per token): {losses}")

    # A model directory: the native Keras file next to the tokenizer and settings it was trained with.
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.model", "config.json"):
        shutil.copy(bot.path / name, out / name)
    bot.model.save(out / "model.keras")
    tuned = chatbot.load(out)
    print(f"saved {out} (model id {tuned.model_id}); it says: {tuned.reply(['hello! how are you?'], seed=0).text}")


if __name__ == "__main__":
    main()
