"""Every entry point of the public API, walked with bad values: each raises a portanet error
whose message names the argument (or what is wrong with it), never a raw Python or NumPy error
from deep inside, and nothing is left half done."""

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

import portanet as pn
from portanet import callbacks as cb
from portanet import metrics, models
from portanet import optimizers as opt
from portanet.data import datasets, text
from portanet.data import preprocessing as pre

TMP = Path(tempfile.gettempdir()) / "portanet-bad-arguments"
X = np.arange(24.0).reshape(8, 3) / 10
Y = np.stack([X[:, 0], X[:, 1]], 1)


def net():
    network = pn.Network([pn.FCLayer(3, 2)])
    network.use("mse")
    return network


CASES = [
 ("Network(layers=5)", lambda: pn.Network(5), "layers"),
 ("Network(dtype=float16)", lambda: pn.Network(dtype="float16"), "dtype"),
 ("Network(precision=float16)", lambda: pn.Network(precision="float16"), "precision"),
 ("Network(precision=, dtype=float64)",
  lambda: pn.Network(dtype="float64", precision="mixed_bfloat16"), "float32"),
 ("add(5)", lambda: pn.Network().add(5), "layer"),
 ("use(5)", lambda: pn.Network().use(5), "loss"),
 ("fit epochs=-1", lambda: net().fit(X, Y, -1), "epochs"),
 ("fit epochs='3'", lambda: net().fit(X, Y, "3"), "epochs"),
 ("fit lr=nan", lambda: net().fit(X, Y, 1, learning_rate=math.nan), "learning_rate"),
 ("fit lr='x'", lambda: net().fit(X, Y, 1, learning_rate="x"), "learning_rate"),
 ("fit batch_size=0", lambda: net().fit(X, Y, 1, batch_size=0), "batch_size"),
 ("fit shuffle='yes'", lambda: net().fit(X, Y, 1, shuffle="yes", verbose=0), "shuffle"),
 ("fit optimizer='adamx'", lambda: net().fit(X, Y, 1, optimizer="adamx"), "optimizer"),
 ("fit optimizer=5", lambda: net().fit(X, Y, 1, optimizer=5), "optimizer"),
 ("fit validation_data=X", lambda: net().fit(X, Y, 1, validation_data=X), "validation_data"),
 ("fit validation_data=(X,)", lambda: net().fit(X, Y, 1, validation_data=(X,)), "validation_data"),
 ("fit validation_split=2", lambda: net().fit(X, Y, 1, validation_split=2), "validation_split"),
 ("fit validation_split='a'", lambda: net().fit(X, Y, 1, validation_split="a"), "validation_split"),
 ("fit verbose='a'", lambda: net().fit(X, Y, 1, verbose="loud"), "verbose"),
 ("fit distributed=5", lambda: net().fit(X, Y, 1, distributed=5), "distributed"),
 ("fit compile='x'", lambda: net().fit(X, Y, 1, compile="x"), "compile"),
 ("fit metrics=['f1']", lambda: net().fit(X, Y, 1, metrics=["f1"]), "metrics"),
 ("fit callbacks=5", lambda: net().fit(X, Y, 1, callbacks=5), "callbacks"),
 ("predict batch_size='a'", lambda: net().predict(X, batch_size="a"), "batch_size"),
 ("evaluate distributed='a'", lambda: net().evaluate(X, Y, distributed="a"), "distributed"),
 ("summary input_shape=5", lambda: net().summary(input_shape=5), "input_shape"),
 ("summary input_shape=(-1,)", lambda: net().summary(input_shape=(-1,)), "input_shape"),
 ("summary print_fn=5", lambda: net().summary(print_fn=5), "print_fn"),
 ("save(5)", lambda: net().save(5), "path"),
 ("save('x.txt')", lambda: net().save(str(TMP / "x.txt")), "suffix"),
 ("load(5)", lambda: pn.load(5), "path"),
 ("load(missing)", lambda: pn.load(str(TMP / "nope.npz")), "nope"),
 ("FCLayer(0, 2)", lambda: pn.FCLayer(0, 2), "input_size"),
 ("FCLayer(2, 2, init='x')", lambda: pn.FCLayer(2, 2, init="x"), "init"),
 ("FCLayer dtype float16", lambda: pn.FCLayer(2, 2, dtype="float16"), "dtype"),
 ("Conv2D stride 0", lambda: pn.Conv2D(1, 2, 3, stride=0), "stride"),
 ("Conv2D padding", lambda: pn.Conv2D(1, 2, 3, padding="full"), "padding"),
 ("Conv2D input_shape", lambda: pn.Conv2D(1, 2, 3, input_shape=(28, 28)), "input_shape"),
 ("MaxPool2D(0)", lambda: pn.MaxPool2D(0), "pool_size"),
 ("AvgPool2D(stride=-1)", lambda: pn.AvgPool2D(2, stride=-1), "stride"),
 ("Conv2D dilation (1, 0)", lambda: pn.Conv2D(1, 2, 3, dilation=(1, 0)), "dilation"),
 ("Conv1D dilation 0", lambda: pn.Conv1D(1, 2, 3, dilation=0), "dilation"),
 ("Conv1D kernel_size (3, 3)", lambda: pn.Conv1D(1, 2, (3, 3)), "kernel_size"),
 ("Conv1D input_shape", lambda: pn.Conv1D(1, 2, 3, input_shape=(28, 28, 1)), "input_shape"),
 ("MaxPool1D(0)", lambda: pn.MaxPool1D(0), "pool_size"),
 ("AvgPool1D(stride=(2, 2))", lambda: pn.AvgPool1D(2, stride=(2, 2)), "stride"),
 ("Dropout(1.5)", lambda: pn.Dropout(1.5), "rate"),
 ("BatchNorm(0)", lambda: pn.BatchNorm(0), "num_features"),
 ("BatchNorm momentum='a'", lambda: pn.BatchNorm(3, momentum="a"), "momentum"),
 ("LayerNorm eps=0", lambda: pn.LayerNorm(3, epsilon=0), "epsilon"),
 ("Embedding(0, 3)", lambda: pn.Embedding(0, 3), "vocabulary"),
 ("PositionalEmbedding(3, 0)", lambda: pn.PositionalEmbedding(3, 0), "dim"),
 ("SelfAttention(5, 2)", lambda: pn.SelfAttention(5, 2), "heads"),
 ("SelfAttention causal='x'", lambda: pn.SelfAttention(4, 2, causal="yes"), "causal"),
 ("Reshape(5)", lambda: pn.Reshape(5), "target_shape"),
 ("ActivationLayer('x')", lambda: pn.ActivationLayer("nope"), "activation"),
 ("ActivationLayer(5)", lambda: pn.ActivationLayer(5), "activation"),
 ("Sequential([5])", lambda: pn.Sequential([5]), "layer"),
 ("Residual(5)", lambda: pn.Residual(5), "layer"),
 ("SGD(lr=0)", lambda: opt.SGD(0), "learning_rate"),
 ("SGD momentum=1", lambda: opt.SGD(0.1, momentum=1.0), "momentum"),
 ("SGD nesterov='x'", lambda: opt.SGD(0.1, nesterov="x"), "nesterov"),
 ("Adam beta_1=1", lambda: opt.Adam(beta_1=1.0), "beta_1"),
 ("Adam clip_norm=-1", lambda: opt.Adam(clip_norm=-1), "clip_norm"),
 ("RMSprop rho=2", lambda: opt.RMSprop(rho=2), "rho"),
 ("AdamW weight_decay=-1", lambda: opt.AdamW(weight_decay=-1), "weight_decay"),
 ("get('x')", lambda: opt.get("x"), "optimizer"),
 ("step_decay(0,..)", lambda: opt.step_decay(0, 0.5, 1), "initial"),
 ("cosine_decay steps 0", lambda: opt.cosine_decay(0.1, 0), "total_steps"),
 ("EarlyStopping(monitor=5)", lambda: cb.EarlyStopping(monitor=5), "monitor"),
 ("EarlyStopping(patience='a')", lambda: cb.EarlyStopping(patience="a"), "patience"),
 ("CSVLogger(5)", lambda: cb.CSVLogger(5), "path"),
 ("set_backend('tf')", lambda: pn.set_backend("tf"), "backend"),
 ("set_backend(5)", lambda: pn.set_backend(5), "backend"),
 ("set_seed('a')", lambda: pn.set_seed("a"), "seed"),
 ("set_seed(-1)", lambda: pn.set_seed(-1), "seed"),
 ("to_categorical([0,1], 1)", lambda: pre.to_categorical([0, 1, 2], 2), "num_classes"),
 ("to_categorical([-1])", lambda: pre.to_categorical([-1, 0]), "labels"),
 ("to_categorical(['a'])", lambda: pre.to_categorical(["a"]), "labels"),
 ("normalize('a')", lambda: pre.normalize("abc"), "not an array"),
 ("standardize([])", lambda: pre.standardize([]), "values"),
 ("CharText('')", lambda: text.CharText(""), "text"),
 ("load_text(5)", lambda: text.load_text(5), "path"),
 ("datasets.load('x')", lambda: datasets.load("cifar"), "data set 'cifar'"),
 ("load_digits(test_fraction=2)", lambda: datasets.load_digits(test_fraction=2), "test_fraction"),
 ("ImageFolder(5)", lambda: pn.ImageFolder(5), "path"),
 ("ImageFolder(missing)", lambda: pn.ImageFolder(TMP / "nope"), "no folder of images"),
 ("ImageFolder image_size=8", lambda: pn.ImageFolder(TMP, image_size=8), "image_size"),
 ("ImageFolder image_size=(0, 8)", lambda: pn.ImageFolder(TMP, image_size=(0, 8)), "image_size"),
 ("ImageFolder color_mode='cmyk'", lambda: pn.ImageFolder(TMP, color_mode="cmyk"), "color_mode"),
 ("accuracy shapes", lambda: metrics.accuracy(np.zeros((3, 2)), np.zeros((4, 2))), "row"),
 ("confusion_matrix shapes",
  lambda: metrics.confusion_matrix(np.zeros((3, 2)), np.zeros((4, 2))), "row"),
 ("causal_transformer(0, 4)", lambda: models.causal_transformer(0, 4), "vocabulary"),
 ("causal_transformer width 5 heads 2",
  lambda: models.causal_transformer(10, 4, width=5, heads=2), "heads"),
 ("models.get('x')", lambda: models.get("x"), "model"),
 ("export_onnx opset 'a'", lambda: pn.export_onnx(net(), str(TMP / "x.onnx"), opset="a"), "opset"),
 ("register_loss(5, ..)", lambda: pn.register_loss(5, lambda a, b: a, lambda a, b: a), "name"),
 ("register_activation('x', 5, 5)", lambda: pn.register_activation("x", 5, 5), "activation"),
 ("set_weights wrong", lambda: pn.FCLayer(2, 2).set_weights([np.zeros((3, 3))]), "weights"),
 ("set_weights count", lambda: pn.FCLayer(2, 2).set_weights([np.zeros((2, 2))]), "weights"),
]


@pytest.mark.parametrize("name, call, names", CASES, ids=[case[0] for case in CASES])
def test_a_bad_value_raises_a_portanet_error_naming_the_argument(backend, name, call, names):
    TMP.mkdir(exist_ok=True)
    with pytest.raises(pn.PortanetError) as raised:
        call()
    assert names.lower() in str(raised.value).lower()
    assert pn.get_backend() is backend  # a refused set_backend leaves the selection as it was


def test_a_learning_rate_with_an_optimizer_object_is_refused_not_ignored(backend):
    with pytest.raises(pn.InputError, match="learning_rate=0.1 was given with the optimizer"):
        net().fit(X, Y, 1, optimizer=opt.Adam(1e-3), learning_rate=0.1, verbose=0)
