import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"]="3"
import numpy as np, keras, tensorflow as tf
sys.path.insert(0, "/work/main")
from chatbot.config import model_config
from chatbot.models import build_model
import chatbot.models.base as base
import chatbot.models.layers as layers
from chatbot.training.data import WindowBatches
tf.config.threading.set_intra_op_parallelism_threads(1)
args = dict(a.split("=") for a in sys.argv[1:])
if args.get("emb") == "normal":
    orig = keras.layers.Embedding.__init__
    def init(self, *a, **k):
        k["embeddings_initializer"] = keras.initializers.RandomNormal(stddev=float(args.get("embstd", 1.0)))
        orig(self, *a, **k)
    keras.layers.Embedding.__init__ = init
if args.get("concat") == "zero":
    def call(self, embedded, context, training=False):
        L = keras.ops.shape(embedded)[1]
        tiled = keras.ops.zeros_like(keras.ops.repeat(keras.ops.expand_dims(context, 1), L, axis=1))
        return self.rnn(keras.ops.concatenate([embedded, tiled], -1), initial_state=self.initial_state(context), training=training)
    layers.UtteranceDecoder.call = call
V = 44
rng = np.random.default_rng(0)
pos = args.get("pos", "first")
def windows(n):
    out = []
    for _ in range(n):
        a = list(rng.integers(4, V, size=rng.integers(3, 7)))
        w = a[0] if pos == "first" else a[-1]
        out.append([[2, *a, 3], [2, w, 3]])
    return out
train = WindowBatches(windows(4000), 32, seed=0)
valid = WindowBatches(windows(256), 64, shuffle=False)
keras.utils.set_random_seed(0)
cfg = model_config("tiny", vocabulary_size=V)
model = build_model(cfg)
lr = float(args.get("lr", 3e-3))
model.compile(optimizer=keras.optimizers.Adam(lr, clipnorm=1.0))
t=time.time()
for epoch in range(int(args.get("epochs", 4))):
    model.fit(train.dataset(), epochs=1, verbose=0)
    losses = [float(model.token_loss(b)[0]) for b in valid.dataset()]
    print(sys.argv[1:], epoch, (epoch+1)*train.num_batches, "valid", round(np.mean(losses),3), "chance 1.844", round(time.time()-t), flush=True)
