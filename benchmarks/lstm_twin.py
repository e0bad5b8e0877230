"""Does portanet's LSTM learn as PyTorch's does? The model of `examples/charlm.py --model lstm`
and its torch.nn twin, the same number of steps.

    python benchmarks/lstm_twin.py [TEXT] [--steps 1000] [--limit N] [--threads N]

portanet (on PORTANET_BACKEND, default NumPy) trains `examples/charlm.py --model lstm`'s model
(embedding 64, LSTM 128, batch 32, context 64, Adam 3e-3, clip_norm 1, seed 0) for ``--steps``
steps on TEXT (default: the standard library's source, as the example); PyTorch then trains the
same model (nn.Embedding, nn.LSTM, nn.Linear) from the same initial weights on the same batches
with the same optimizer. Both are evaluated on every consecutive window of the validation part
(the last 10 % of the text); the script prints both losses and their difference, which should
stay within 0.05 nats per character.
"""

import argparse
import time

import numpy as np
from learning import torch_loss
from run import set_threads
from torch_models import torch_lstm_lm, torch_trainer, transformer_weights

import portanet
from portanet.backend import to_numpy
from portanet.models import lstm_language_model
from portanet.optimizers import Adam
from portanet.text import CharText, load_text

WIDTH, HIDDEN, CONTEXT = 64, 128, 64  # examples/charlm.py --model lstm's defaults
BATCH, LEARNING_RATE, CLIP_NORM, SEED = 32, 3e-3, 1.0, 0
TARGET = 0.05  # nats per character


def options():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", nargs="?", help="UTF-8 text file (default: the standard library)")
    parser.add_argument("--limit", type=int, help="use the first N characters of the text")
    parser.add_argument("--steps", type=int, default=1000, help="training steps of each")
    parser.add_argument("--threads", type=int, help="BLAS and torch threads (default: NumPy's)")
    return parser.parse_args()


def main():
    args = options()
    threads = set_threads(args.threads)
    print(f"backend: {portanet.get_backend()}; BLAS and torch threads: {threads}")
    text = CharText(load_text(args.text, limit=args.limit))
    x_val, y_val = (np.asarray(to_numpy(a)) for a in text.windows(CONTEXT, split="validation"))
    print(f"text: {args.text or 'the standard library'}: {len(text.ids['train'])} training and "
          f"{len(text.ids['validation'])} validation characters ({len(x_val)} windows), "
          f"vocabulary of {len(text.vocabulary)}")
    portanet.set_seed(SEED)
    net = lstm_language_model(len(text.vocabulary), WIDTH, HIDDEN)
    weights = transformer_weights(net)
    x, y = (np.asarray(to_numpy(a)) for a in text.batch(args.steps * BATCH, CONTEXT))
    start = time.perf_counter()
    net.fit(x, y, epochs=1, batch_size=BATCH, optimizer=Adam(LEARNING_RATE, clip_norm=CLIP_NORM),
            verbose=0)
    ours = net.evaluate(x_val, y_val)["loss"]
    print(f"portanet: {args.steps} steps in {time.perf_counter() - start:.0f} s, validation "
          f"loss {ours:.4f}", flush=True)

    import torch
    model = torch_lstm_lm(torch, weights)
    step = torch_trainer(torch, model, LEARNING_RATE, CLIP_NORM)
    start = time.perf_counter()
    for i in range(0, len(x), BATCH):
        step(torch.from_numpy(x[i:i + BATCH]), torch.from_numpy(y[i:i + BATCH]))
    theirs = torch_loss(model, x_val, y_val)
    print(f"torch:    {args.steps} steps in {time.perf_counter() - start:.0f} s, validation "
          f"loss {theirs:.4f}")
    difference = ours - theirs
    print(f"difference (portanet - torch): {difference:+.4f} nats/char; target: within "
          f"{TARGET} ({'met' if abs(difference) <= TARGET else 'missed'})")


if __name__ == "__main__":
    main()
