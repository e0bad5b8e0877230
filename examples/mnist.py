"""The tutorial's MNIST walk-through on portanet, on whatever backend PORTANET_BACKEND selects.

A 784-100-50-10 tanh network trained with MSE, one sample at a time, on the first 1000 training
images for 35 epochs; first on raw pixel values, then normalized, then standardized, as the
tutorial compares them (each scaler fitted on the training images, reused for the test images,
and kept by the network). MNIST needs internet the first time (or the files in a folder given by
--data-dir / PORTANET_DATA); --dataset fashion-mnist or digits run offline.

    python examples/mnist.py
    python examples/mnist.py --dataset fashion-mnist
    PORTANET_BACKEND=torch PORTANET_DEVICE=cuda python examples/mnist.py --dataset digits
"""

import argparse

import numpy as np

import portanet
from portanet import ActivationLayer, FCLayer, Network
from portanet.activations import tanh, tanh_prime
from portanet.datasets import load
from portanet.losses import mse, mse_prime
from portanet.metrics import classification_report
from portanet.preprocessing import Normalizer, Standardizer, to_categorical

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist", "digits"])
parser.add_argument("--data-dir")
parser.add_argument("--samples", type=int, default=1000)
parser.add_argument("--epochs", type=int, default=35)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                    help="float64 (default) computes as the tutorial's float64 weights do")
args = parser.parse_args()
print("backend:", portanet.get_backend())

(x_train, y_train), (x_test, y_test) = load(args.dataset, data_dir=args.data_dir)
features = x_train.shape[1] * x_train.shape[2]
# the tutorial's layout: (samples, 1, features), float32, one-hot targets
x_train = x_train.reshape(len(x_train), 1, features).astype("float32")
x_test = x_test.reshape(len(x_test), 1, features).astype("float32")
y_train = to_categorical(y_train, 10)
y_test = to_categorical(y_test, 10)

results = {}
for name, scaler in (("raw", None), ("normalized", Normalizer()),
                     ("standardized", Standardizer())):
    portanet.set_seed(args.seed)  # the same initial network for each preprocessing
    train, test = x_train, x_test  # raw pixels: a network with a scaler scales its inputs
    net = Network()
    if scaler is not None:  # statistics of the training images, reused for the test images
        net.scaler = scaler.fit(x_train[:args.samples])
    # the tutorial's U(-0.5, 0.5) initial weights
    net.add(FCLayer(features, 100, init="uniform", dtype=args.dtype))
    net.add(ActivationLayer(tanh, tanh_prime))
    net.add(FCLayer(100, 50, init="uniform", dtype=args.dtype))
    net.add(ActivationLayer(tanh, tanh_prime))
    net.add(FCLayer(50, 10, init="uniform", dtype=args.dtype))
    net.add(ActivationLayer(tanh, tanh_prime))
    net.use(mse, mse_prime)
    print(f"\n== {name} inputs: training on {args.samples} samples")
    net.fit(train[:args.samples], y_train[:args.samples], epochs=args.epochs, learning_rate=0.1)

    out = net.predict(test[0:3])
    print("predicted values:\n", np.round(out, 2), "\ntrue values:\n", y_test[0:3])
    predictions = net.predict(test)[:, 0]  # (N, 1, 10) in the tutorial's layout -> (N, 10)
    print(classification_report(y_test, predictions))
    results[name] = float(np.mean(predictions.argmax(-1) == y_test.argmax(-1)))

print("\ntest accuracy: " + ", ".join(f"{name} {acc:.3f}" for name, acc in results.items()))
