"""Plug your own sampler into the reply path: locally typical sampling (Meister et al. 2023, "Locally Typical
Sampling", TACL 11), written against the models' inference contract, answering a stored conversation.

    python examples/custom_sampler.py [--model DIR] [--db PATH] [--tau 0.95]

Every model answers through two calls: `encode_context(context)` turns a `(batch, turns, tokens)` history
into a decoder state, and `decode_step(tokens, state)` gives the next token's `(batch, vocabulary)` logits
and the next state. A generator is anything with `candidates(context, decoding, seed, eager=False)`
returning `Candidate`s; `chatbot.Bot(checkpoint, generator=...)` replies with it, and so does every
conversation of that bot, which stores each reply with its seed like any other.
"""

import argparse

import numpy as np

import chatbot
from chatbot.inference.generation import Candidate
from chatbot.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID


class TypicalSampler:
    """Samples each token from the smallest set, by closeness of its information (-log p) to the entropy of
    the step's distribution, that holds `tau` of the probability (Meister et al. 2023, eq. 6)."""

    def __init__(self, model, tau: float = 0.95):
        self.model, self.tau = model, tau

    def candidates(self, context, decoding, seed, eager=False):
        rng = np.random.default_rng(seed)
        found = []
        for _ in range(decoding.num_return_sequences):
            state = self.model.encode_context(np.asarray(context, np.int32))
            token, tokens, log_probability, ended = BOS_ID, [], 0.0, False
            for _ in range(decoding.max_reply_tokens):
                logits, state = self.model.decode_step(np.array([token], np.int32), state)
                logits = np.asarray(logits, np.float64)[0] / decoding.temperature
                logits[[PAD_ID, UNK_ID, BOS_ID]] = -np.inf
                log_p = logits - np.logaddexp.reduce(logits)
                p = np.exp(log_p)
                entropy = -np.sum(p[p > 0] * log_p[p > 0])
                order = np.argsort(np.abs(-log_p - entropy))  # most typical first
                keep = order[: int(np.searchsorted(np.cumsum(p[order]), self.tau)) + 1]
                token = int(rng.choice(keep, p=p[keep] / p[keep].sum()))
                log_probability += float(log_p[token])
                if token == EOS_ID:
                    ended = True
                    break
                tokens.append(token)
            found.append(Candidate(tuple(tokens), log_probability, log_probability / max(len(tokens), 1), ended, compiled=False))
        return sorted(found, key=lambda c: c.score, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--db", help="a SQLite file or SQLAlchemy URL (default: the chat's own database)")
    parser.add_argument("--tau", type=float, default=0.95, help="probability mass kept at each step")
    args = parser.parse_args()

    loaded = chatbot.load(args.model)
    bot = chatbot.Bot(loaded.checkpoint, generator=TypicalSampler(loaded.model, args.tau))
    history = ["hi! what are you studying?"]
    print("top-p  :", loaded.reply(history, seed=3).text)
    print("typical:", bot.reply(history, seed=3).text)
    assert bot.reply(history, seed=3).text == bot.reply(history, seed=3).text  # seeded, so repeatable
    with bot.conversation(db=args.db) as chat:
        for message in ["hello! how are you?", "what do you do for fun?"]:
            reply = chat.say(message, seed=7)
            print(f"you> {message}\nbot> {reply.text}")
        print(f"stored as conversation {chat.id}, {len(chat.history())} turns")


if __name__ == "__main__":
    main()
