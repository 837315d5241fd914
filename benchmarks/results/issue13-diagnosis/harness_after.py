"""Scratch learning-curve harness on the real code: python lc2.py name key=value ..."""
import os, sys, time, pickle, json
os.environ["TF_CPP_MIN_LOG_LEVEL"]="3"
import numpy as np, keras, tensorflow as tf
from keras import ops
sys.path.insert(0, os.environ["SRC"])
tf.config.threading.set_intra_op_parallelism_threads(int(os.environ.get("THREADS", "1")))
tf.config.threading.set_inter_op_parallelism_threads(1)
from chatbot.config import model_config, TrainConfig
from chatbot.models import build_model
import chatbot.models.hred as hred
from chatbot.models.base import existing_targets, probe_context
from chatbot.training.data import WindowBatches
from chatbot.training.trainer import make_optimizer
name = sys.argv[1]
if "initonly=1" in sys.argv:  # the context enters only through the decoder's initial state
    import chatbot.models.layers as layers
    def call(self, embedded, context, training=False):
        tiled = ops.zeros_like(ops.repeat(ops.expand_dims(context, 1), ops.shape(embedded)[1], axis=1))
        return self.rnn(ops.concatenate([embedded, tiled], -1), initial_state=self.initial_state(context), training=training)
    layers.UtteranceDecoder.call = call
args = dict(a.split("=") for a in sys.argv[2:] if not a.startswith("initonly"))
A = lambda k, d: (args.get(k, str(d)) in ("1", "True", "true")) if isinstance(d, bool) else type(d)(args.get(k, d))
wt, wv = pickle.load(open("/work/scratch/win2000.pkl", "rb"))
train = WindowBatches(wt, A("batch", 64), seed=0)
vbatches = [b for b in WindowBatches(wv, 64, shuffle=False).dataset()]
keras.utils.set_random_seed(0)
over = {k: A(k, d) for k, d in dict(tie_embeddings=True, scale_embeddings=True, dropout=0.1, embedding_dim=128, decoder_dim=256, context_dim=256, hidden_dim=256, latent_dim=64, word_dropout=0.25, bow_weight=1.0, kl_anneal_steps=2000).items() if k in args}
cfg = model_config("small", vocabulary_size=8000, model=args.get("model", "hred"), attention=args.get("attention", "none"), **over)
model = build_model(cfg)
model.length_groups = 4
steps = A("steps", 300)
tc = TrainConfig(learning_rate=A("lr", 3e-3), clipnorm=A("clip", 1.0), warmup_steps=A("warmup", 0), lr_schedule=args.get("schedule", "constant"))
model.compile(optimizer=make_optimizer(tc, A("total", steps)))
fns = {m: tf.function(lambda b, m=m: model.loss_terms(b, training=False, context_mode=m), reduce_retracing=True) for m in ("true", "shuffled", "none")}
def ppl(mode="true"):
    tot = {}
    for b in vbatches:
        for k, v in fns[mode](b).items(): tot[k] = tot.get(k, 0.0) + float(v)
    return float(np.exp(float(model.bound_nll(tot)) / tot["tokens"])), tot
def ctx_stats():
    b = vbatches[len(vbatches) // 2]
    if not hasattr(model, "encode_turns"): return {}
    ctx, _ = model.encode_turns(b)
    _, c = existing_targets(ctx[:, :-1], replies=b[:, 1:]); c = c.numpy()
    return dict(ctx_rms=round(float(np.sqrt((c ** 2).mean())), 3), ctx_spread=round(float(c.std(0).mean()), 4))
every = A("every", 50)
ds = train.dataset().repeat()
t0 = time.time(); log = []; done = 0; train_s = 0.0
while done < steps:
    t = time.time(); model.fit(ds, steps_per_epoch=every, epochs=1, verbose=0); train_s += time.time() - t
    done += every
    v, tot = ppl()
    row = dict(updates=done, train_seconds=round(train_s), val=round(v, 1))
    if "kl" in tot: row["kl_per_reply"] = round(tot["kl"] / tot["replies"], 3); row["recon"] = round(float(np.exp(tot["nll"] / tot["tokens"])), 1)
    if done % A("probe_every", 100) == 0 or done >= steps:
        row.update(**ctx_stats()); row.update(shuffled=round(ppl("shuffled")[0], 1), none=round(ppl("none")[0], 1))
    log.append(row); print(name, row, flush=True)
    json.dump(dict(name=name, args=args, log=log), open(f"/work/scratch/lc2-{name}.json", "w"))
model.save_weights(f"/work/scratch/w2-{name}.weights.h5")
