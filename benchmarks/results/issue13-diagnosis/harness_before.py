"""Scratch learning-curve harness: python lc.py name key=value ..."""
import os, sys, time, pickle, json
os.environ["TF_CPP_MIN_LOG_LEVEL"]="3"
import numpy as np, keras, tensorflow as tf
from keras import ops
sys.path.insert(0, os.environ.get("SRC", "/work/main"))
tf.config.threading.set_intra_op_parallelism_threads(int(os.environ.get("THREADS", "1")))
tf.config.threading.set_inter_op_parallelism_threads(1)
from chatbot.config import model_config
from chatbot.models import build_model
import chatbot.models.hred as hred
import chatbot.models.layers as layers
from chatbot.models.base import existing_targets
from chatbot.training.data import WindowBatches
name = sys.argv[1]
args = dict(a.split("=") for a in sys.argv[2:])
A = lambda k, d: type(d)(args.get(k, d)) if not isinstance(d, bool) else args.get(k, str(d)) in ("1", "True", "true")
if args.get("emb") == "normal":
    orig = keras.layers.Embedding.__init__
    def init(self, *a, **k):
        k["embeddings_initializer"] = keras.initializers.RandomNormal(stddev=float(args.get("embstd", 1.0)))
        orig(self, *a, **k)
    keras.layers.Embedding.__init__ = init
concat = args.get("concat", "context")
if concat != "context":
    def call(self, embedded, context, training=False):
        L = ops.shape(embedded)[1]
        tiled = ops.repeat(ops.expand_dims(context, 1), L, axis=1)
        if concat == "zero": tiled = ops.zeros_like(tiled)
        return self.rnn(ops.concatenate([embedded, tiled], -1), initial_state=self.initial_state(context), training=training)
    layers.UtteranceDecoder.call = call
MODE = {"m": "true"}
def loss_terms(self, tokens, training=False, mode="true"):
    MODE["m"] = mode
    context, _ = self.encode_turns(tokens, training)
    replies, context = existing_targets(context[:, :-1], replies=tokens[:, 1:])
    norm = getattr(self, "ctx_norm", None)
    if norm is not None:
        context = norm(context, training=training)
    if MODE["m"] == "shuffled":
        context = ops.roll(context, ops.shape(context)[0] // 2, axis=0)
    elif MODE["m"] == "zero":
        context = ops.zeros_like(context)
    nll, count = self.target_nll(replies, context, training)
    return {"nll": nll, "tokens": count}
hred.HRED.loss_terms = loss_terms
def decoder_inputs(self, inputs, training=False):
    if MODE["m"] == "unk":
        return ops.where(inputs > 3, ops.ones_like(inputs), inputs)
    return inputs
hred.HRED.decoder_inputs = decoder_inputs
wt, wv = pickle.load(open("/work/scratch/win2000.pkl", "rb"))
bs = A("batch", 64)
train = WindowBatches(wt, bs, seed=0)
valid = WindowBatches(wv, 64, shuffle=False)
vbatches = [b for b in valid.dataset()]
keras.utils.set_random_seed(0)
cfg = model_config("small", vocabulary_size=8000, dropout=A("dropout", 0.1))
model = build_model(cfg)
model.length_groups = 4
cn = args.get("ctxnorm", "none")
model._tracker.unlock()
if cn == "bn":
    model.ctx_norm = keras.layers.BatchNormalization(center=False, scale=A("bnscale", False), momentum=0.99)
elif cn == "center":
    class Center(keras.layers.Layer):
        def build(self, shape):
            self.moving_mean = self.add_weight(shape=(shape[-1],), initializer="zeros", trainable=False, name="moving_mean")
        def call(self, x, training=False):
            if training:
                mean = ops.mean(x, axis=0)
                self.moving_mean.assign(0.99 * self.moving_mean + 0.01 * mean)
                return x - mean
            return x - self.moving_mean
    model.ctx_norm = Center()
elif cn == "ln":
    model.ctx_norm = keras.layers.LayerNormalization()
if cn != "none":
    model.ctx_norm.build((None, 256))
if A("tie", False):
    import chatbot.models.base as basemod
    d = cfg.embedding_dim
    model.embedding.embeddings.assign(np.random.default_rng(0).standard_normal((8000, d)).astype("float32") / np.sqrt(d))
    class Tied(keras.layers.Layer):
        def __init__(self, emb, **kw):
            super().__init__(**kw); object.__setattr__(self, "emb", emb)
            self.adapter = keras.layers.Dense(d, name="adapter")
        def build(self, shape):
            self.adapter.build(shape); self.b = self.add_weight(shape=(8000,), initializer="zeros", name="b")
        def call(self, h):
            return ops.matmul(self.adapter(h), ops.transpose(self.emb.embeddings)) + self.b
    model.output_projection = Tied(model.embedding)
    model.output_projection.build((None, 256))
    scale = float(np.sqrt(d))
    basemod.DialogueModel.embed = lambda self, ids, training=False: self.embedding_dropout(self.embedding(ids) * scale, training=training)
probe_batch = vbatches[len(vbatches) // 2]
def ctx_stats():
    ctx, vec = model.encode_turns(probe_batch)
    _, c = existing_targets(ctx[:, :-1], replies=probe_batch[:, 1:])
    c = c.numpy()
    return dict(ctx_rms=round(float(np.sqrt((c ** 2).mean())), 3), ctx_spread=round(float(c.std(0).mean()), 4))
lr = A("lr", 3e-3)
clip = {"clipnorm": A("clip", 1.0)} if args.get("clipmode", "var") == "var" else {"global_clipnorm": A("clip", 1.0)}
model.compile(optimizer=keras.optimizers.Adam(lr, **clip))
terms_fns = {m: tf.function(lambda b, m=m: model.loss_terms(b, training=False, mode=m), reduce_retracing=True) for m in ("true", "shuffled", "zero", "unk")}
def ppl(mode="true"):
    nll = tok = 0.0
    for b in vbatches:
        t = terms_fns[mode](b); nll += float(t["nll"]); tok += float(t["tokens"])
    return float(np.exp(nll / tok))
steps, every = A("steps", 300), A("every", 50)
ds = train.dataset().repeat()
t0 = time.time(); log = []
it = iter(ds)
done = 0
while done < steps:
    model.fit(ds, steps_per_epoch=every, epochs=1, verbose=0)
    done += every
    row = dict(updates=done, seconds=round(time.time() - t0), val=round(ppl(), 1))
    if done % A("probe_every", 150) == 0 or done >= steps:
        row.update(**ctx_stats()); row.update(shuffled=round(ppl("shuffled"), 1), zero=round(ppl("zero"), 1), unk=round(ppl("unk"), 1))
    log.append(row); print(name, row, flush=True)
model.save_weights(f"/work/scratch/w-{name}.weights.h5")
json.dump(dict(name=name, args=args, log=log), open(f"/work/scratch/lc-{name}.json", "w"))
