"""Does portanet learn as PyTorch does? examples/charlm.py's model, trained for a time budget.

    python benchmarks/learning.py [TEXT] [--seconds 600] [--limit N] [--threads N]

portanet (on PORTANET_BACKEND, default NumPy) trains examples/charlm.py's default model (2
blocks, width 64, 4 heads, context 64, batch 32, Adam 1e-3, clip_norm 1, seed 0) on TEXT (default:
the standard library's source, as the example) for ``--seconds`` of wall-clock time; PyTorch
then trains the same model from the same initial weights on the same batches for the same number
of steps. Both are evaluated on every consecutive window of the validation part (the last 10 %
of the text); the script prints both losses, their difference and a sample from portanet's model.
"""

import argparse
import time

import numpy as np
from run import set_threads
from torch_models import cross_entropy, torch_trainer, torch_transformer, transformer_weights

import portanet
from portanet.backend import to_numpy
from portanet.models import causal_transformer
from portanet.optimizers import Adam
from portanet.text import CharText, generate, load_text

MODEL = dict(blocks=2, width=64, heads=4, context=64)  # examples/charlm.py's defaults
BATCH, LEARNING_RATE, CLIP_NORM, SEED = 32, 1e-3, 1.0, 0
CHUNK = 50  # steps per fit call; the time budget is checked between chunks


def options():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", nargs="?", help="UTF-8 text file (default: the standard library)")
    parser.add_argument("--limit", type=int, help="use the first N characters of the text")
    parser.add_argument("--seconds", type=float, default=600, help="portanet's training time")
    parser.add_argument("--threads", type=int, help="BLAS and torch threads (default: NumPy's)")
    parser.add_argument("--prompt", default="The ", help="start of the generated sample")
    parser.add_argument("--generate", type=int, default=300, help="characters of the sample")
    return parser.parse_args()


def train_portanet(text, seconds):
    """(network, initial weights, batches, seconds): trained in chunks of CHUNK steps until
    ``seconds`` have passed."""
    portanet.set_seed(SEED)
    net = causal_transformer(len(text.vocabulary), **MODEL)
    weights = transformer_weights(net)
    optimizer = Adam(LEARNING_RATE, clip_norm=CLIP_NORM)
    batches, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        x, y = text.batch(CHUNK * BATCH, MODEL["context"])
        loss = net.fit(x, y, epochs=1, batch_size=BATCH, optimizer=optimizer,
                       verbose=0).history["loss"][-1]
        batches.append((x, y))
        if len(batches) % 20 == 0:
            print(f"  portanet: step {len(batches) * CHUNK}   loss={loss:.4f}   "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    return net, weights, batches, time.perf_counter() - start


def train_torch(weights, batches):
    """(model, seconds): the same model from ``weights``, trained on ``batches`` in order."""
    import torch
    model = torch_transformer(torch, weights, MODEL["heads"])
    step = torch_trainer(torch, model, LEARNING_RATE, CLIP_NORM)
    start = time.perf_counter()
    for x, y in batches:
        for i in range(0, len(x), BATCH):
            step(torch.from_numpy(x[i:i + BATCH]), torch.from_numpy(y[i:i + BATCH]))
    return model, time.perf_counter() - start


def torch_loss(model, x, y, batch=256):
    """Mean cross-entropy of ``model`` over the windows ``x`` with targets ``y``."""
    import torch
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb, yb = torch.from_numpy(x[i:i + batch]), torch.from_numpy(y[i:i + batch])
            total += cross_entropy(torch, model(xb), yb).item() * len(xb)
    return total / len(x)


def main():
    args = options()
    threads = set_threads(args.threads)
    print(f"backend: {portanet.get_backend()}; BLAS and torch threads: {threads}")
    text = CharText(load_text(args.text, limit=args.limit))
    x_val, y_val = (np.asarray(to_numpy(a)) for a in text.windows(MODEL["context"],
                                                                  split="validation"))
    print(f"text: {args.text or 'the standard library'}: {len(text.ids['train'])} training and "
          f"{len(text.ids['validation'])} validation characters ({len(x_val)} windows), "
          f"vocabulary of {len(text.vocabulary)}")
    net, weights, batches, seconds = train_portanet(text, args.seconds)
    steps = len(batches) * CHUNK
    ours = net.evaluate(x_val, y_val)["loss"]
    print(f"portanet: {steps} steps in {seconds:.0f} s, validation loss {ours:.4f}", flush=True)
    model, torch_seconds = train_torch(weights, batches)
    theirs = torch_loss(model, x_val, y_val)
    print(f"torch:    {steps} steps in {torch_seconds:.0f} s, validation loss {theirs:.4f}")
    print(f"difference (portanet - torch): {ours - theirs:+.4f} nats/char")
    portanet.set_seed(SEED)
    ids = generate(net, text.encode(args.prompt), args.generate, MODEL["context"],
                   temperature=0.8, top_k=10)
    print("portanet sample (temperature 0.8, top_k 10):")
    print(text.decode(ids))


if __name__ == "__main__":
    main()
