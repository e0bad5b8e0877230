"""One network trained by several MPI processes: data-parallel, the model code unchanged.

Every rank runs this whole script on all the data; ``fit(..., distributed=True)`` gives each rank
its share of every batch of 128 and sums the gradients, so the ranks end with the same weights as
one process would. Only rank 0 prints and saves.

    mpirun -n 2 python examples/distributed.py --dataset digits          # seconds, offline
    mpirun -n 4 python examples/distributed.py --epochs 10               # Fashion-MNIST
    PORTANET_BACKEND=cupy PORTANET_DEVICE=cuda mpirun -n 4 python examples/distributed.py
"""

import argparse

import portanet
from portanet import distributed
from portanet.datasets import load
from portanet.models import modern_mlp
from portanet.preprocessing import to_categorical

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--dataset", default="fashion-mnist", choices=["mnist", "fashion-mnist",
                                                                   "digits"])
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--save", help="rank 0 saves the trained network here (.npz)")
args = parser.parse_args()

world = distributed.init()  # before anything else: it shares the node's cores among the ranks
if world.is_root:
    print(f"{world.size} processes, backend {portanet.get_backend()}")
portanet.set_seed(0)

(x_train, y_train), (x_test, y_test) = load(args.dataset)
scale = float(x_train.max())
x_train = (x_train / scale).reshape(len(x_train), -1).astype("float32")
x_test = (x_test / scale).reshape(len(x_test), -1).astype("float32")
y_train, y_test = to_categorical(y_train), to_categorical(y_test)

net = modern_mlp(x_train.shape[1:], classes=10)
net.fit(x_train, y_train, epochs=args.epochs, batch_size=128, shuffle=True, optimizer="adam",
        learning_rate=1e-3, validation_split=0.1, distributed=True)
scores = net.evaluate(x_test, y_test, distributed=True)  # each rank scores its share
if world.is_root:
    print(f"test loss {scores['loss']:.4f}, accuracy {scores['accuracy']:.4f}; gradients went "
          f"through {world.transport}, {world.comm_seconds:.2f}s in {world.steps} exchanges")
    if args.save:
        print("saved", net.save(args.save))
