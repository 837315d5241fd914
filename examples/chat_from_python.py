"""Chat with the shipped model from Python: stateless replies, then a stored conversation with a retry.

    python examples/chat_from_python.py [--db PATH] [--model DIR]

Without --db the conversation goes where `chatbot chat` keeps its own (storage/chatbot.db), so
`chatbot sessions` and `chatbot replay` see it.
"""

import argparse

import chatbot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="a SQLite file or SQLAlchemy URL (default: the chat's own database)")
    parser.add_argument("--model", default="default", help="a model directory or name (default: the shipped model)")
    args = parser.parse_args()

    bot = chatbot.load(args.model)
    print(f"loaded {bot.name}: {bot.config.model}, model id {bot.model_id}")

    # Stateless: the history is yours to keep; the same history, settings and seed give the same reply.
    history = []
    for message in ["hi! what are you studying?", "what do you like about it?"]:
        history.append(message)
        reply = bot.reply(history, seed=42)
        history.append(reply.text)
        print(f"you> {message}\nbot> {reply.text}")
    assert bot.reply(history[:1], seed=42).text == history[1]  # the seed repeats the reply

    # Three candidates from a beam search, best first.
    reply = bot.reply(["what is your favourite book?"], decoding=chatbot.Decoding(sampler="beam", num_beams=3), n=3)
    print("beam candidates:", " | ".join(reply.candidates))

    # Stored: every message and reply is committed as it is made; a retry keeps the first reply as a branch.
    with bot.conversation(db=args.db) as chat:
        first = chat.say("hello! how are you?", seed=1)
        second = chat.retry(seed=2)
        print(f"conversation {chat.id}: '{first.text}', retried: '{second.text}', branches: {len(chat.branches())}")
    report = chatbot.replay(chat.id, db=args.db, all_branches=True)
    identical, total = report.counts()
    print(f"replay: {identical} of {total} replies identical")


if __name__ == "__main__":
    main()
