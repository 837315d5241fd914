import os, sys, pickle
sys.path.insert(0, "/work/main")
from chatbot.corpus import load_corpus
from chatbot.tokenizer import Tokenizer
from chatbot.training.data import dialogue_windows
corpus = load_corpus("chitchat", None, 2000)
tr, va = corpus.split("train"), corpus.split("valid")
tok = Tokenizer.train([t.text for d in tr for t in d.turns], 8000)
tok.save("tok2000.model")
wt = dialogue_windows(tr, tok, 8, 48); wv = dialogue_windows(va, tok, 8, 48)
pickle.dump((wt, wv), open("win2000.pkl", "wb"))
print(len(tr), len(va), len(wt), len(wv), tok.vocabulary_size)
