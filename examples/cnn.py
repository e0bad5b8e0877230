"""A small CNN on Fashion-MNIST (or digits), on whatever backend PORTANET_BACKEND selects.

Two conv + ReLU + max-pool blocks and a dense head, softmax cross-entropy, Adam, mini-batches of
128. Images are NCHW: (batch, channels, height, width).

    python examples/cnn.py --dataset digits              # seconds, offline
    python examples/cnn.py --dataset digits --epochs 1 --limit 300 --save cnn.npz   # a smoke test
    python examples/cnn.py --epochs 10                   # Fashion-MNIST, about 91 % accuracy
    PORTANET_BACKEND=cupy python examples/cnn.py         # the same on a GPU
"""

import argparse

import portanet
from portanet.datasets import load
from portanet.metrics import classification_report
from portanet.models import small_cnn
from portanet.optimizers import Adam
from portanet.preprocessing import to_categorical

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--dataset", default="fashion-mnist", choices=["mnist", "fashion-mnist",
                                                                   "digits"])
parser.add_argument("--data-dir")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--limit", type=int, help="train on the first N training images only")
parser.add_argument("--save", metavar="PATH", help="save the trained network (.npz)")
args = parser.parse_args()
print("backend:", portanet.get_backend())
portanet.set_seed(args.seed)

(x_train, y_train), (x_test, y_test) = load(args.dataset, data_dir=args.data_dir)
scale = float(x_train.max())
x_train = (x_train / scale).astype("float32")[:, None]  # (N, 1, H, W)
x_test = (x_test / scale).astype("float32")[:, None]
y_train, y_test = to_categorical(y_train, 10), to_categorical(y_test, 10)
x_train, y_train = x_train[:args.limit], y_train[:args.limit]  # all of them without --limit

net = small_cnn(x_train.shape[2:], classes=10)
net.summary()
net.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, shuffle=True,
        optimizer=Adam(1e-3), validation_split=0.1)
print(classification_report(y_test, net.predict(x_test)))
if args.save:
    print("saved the network to", net.save(args.save))
