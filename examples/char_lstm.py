"""A character-level LSTM language model, on any backend: examples/charlm.py's task with a
recurrent network (embedding, LSTM, the next character's scores) instead of a transformer.

    python examples/char_lstm.py                       # the Python standard library's source
    python examples/char_lstm.py --text input.txt --steps 3000
    PORTANET_BACKEND=jax python examples/char_lstm.py  # the step compiled with jax.jit
    python examples/char_lstm.py --load char_lstm.npz --generate 500 --prompt "def "

Training prints the validation loss and a sample of generated text every --sample-every steps
and at the end, then saves the network (its vocabulary in the file's metadata); --load generates
from a saved network instead of training.
"""

import argparse
import time

import portanet
from portanet.models import lstm_language_model
from portanet.optimizers import Adam
from portanet.text import CharText, generate, load_text


def options():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--text", help="UTF-8 text file (default: the Python standard library)")
    parser.add_argument("--limit", type=int, help="use the first N characters of the text")
    parser.add_argument("--width", type=int, default=64, help="embedding width")
    parser.add_argument("--hidden", type=int, default=128, help="LSTM hidden units")
    parser.add_argument("--context", type=int, default=64, help="characters per training window")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1000, help="training steps (batches)")
    parser.add_argument("--sample-every", type=int, default=250, help="steps between samples")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--clip-norm", type=float, default=1.0, help="gradient clipping")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--generate", type=int, default=200, help="characters per sample")
    parser.add_argument("--prompt", default="def ")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default="char_lstm.npz", help="where to save the network")
    parser.add_argument("--load", help="generate from this saved network instead of training")
    return parser.parse_args()


def sample(net, text, args):
    """Generated text from ``args.prompt``, the same for the same seed and network (the LSTM
    reads the last ``context`` characters again for each new one)."""
    portanet.set_seed(args.seed)
    ids = generate(net, text.encode(args.prompt), args.generate, net.metadata["context"],
                   temperature=args.temperature, top_k=args.top_k)
    return text.decode(ids)


def train(args):
    text = CharText(load_text(args.text, limit=args.limit))
    print(f"text: {len(text.ids['train'])} training and {len(text.ids['validation'])} validation "
          f"characters, vocabulary of {len(text.vocabulary)}")
    portanet.set_seed(args.seed)
    net = lstm_language_model(len(text.vocabulary), args.width, args.hidden)
    net.metadata = {"vocabulary": text.vocabulary, "context": args.context}
    net.summary(input_shape=(args.context,))
    optimizer = Adam(args.learning_rate, clip_norm=args.clip_norm)
    x_val, y_val = text.batch(4 * args.batch_size, args.context, split="validation")
    done, start = 0, time.perf_counter()
    while done < args.steps:
        steps = min(args.sample_every, args.steps - done)
        x, y = text.batch(steps * args.batch_size, args.context)
        history = net.fit(x, y, epochs=1, batch_size=args.batch_size, optimizer=optimizer,
                          verbose=0)
        done += steps
        loss = history.history["loss"][-1]
        val_loss = net.evaluate(x_val, y_val)["loss"]
        print(f"step {done}/{args.steps}   loss={loss:.4f}   val_loss={val_loss:.4f}   "
              f"{time.perf_counter() - start:.1f} s   step: {history.compiled}")
        print("sample:", repr(sample(net, text, args)))
    net.save(args.save)
    print(f"saved the network to {args.save}")


def main():
    args = options()
    print("backend:", portanet.get_backend())
    if args.load:
        net = portanet.load(args.load)
        text = CharText(net.metadata["vocabulary"], validation=0)
        print("sample:", repr(sample(net, text, args)))
    else:
        train(args)


if __name__ == "__main__":
    main()
