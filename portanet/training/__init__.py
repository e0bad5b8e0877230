"""The training machinery behind ``Network.fit``, ``predict`` and ``evaluate``.

- :mod:`~portanet.training.loop`: ``fit`` (epochs, batches, callbacks, progress, Ctrl-C);
- :mod:`~portanet.training.runner`: the step as the loop runs it (compiled whole, split between
  threads, or in two halves across MPI ranks);
- :mod:`~portanet.training.step`: one training step as a pure function of arrays, and the
  inference pass;
- :mod:`~portanet.training.evaluation`: prediction in batches and scores;
- :mod:`~portanet.training.inputs`: the checks of every input;
- :mod:`~portanet.training.cache`: steps and compiled functions kept per network, and shared
  between networks alike;
- :mod:`~portanet.training.threads`: eager steps split between threads;
- :mod:`~portanet.training.world`: the other processes of an MPI job (collectives);
- :mod:`~portanet.training.history`, :mod:`~portanet.training.progress`: what ``fit`` returns
  and prints.
"""
