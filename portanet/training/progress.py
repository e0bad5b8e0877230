"""Per-epoch progress: a live bar on a terminal, one plain line per epoch otherwise."""

import sys
import time

BAR_WIDTH = 24
REFRESH_SECONDS = 0.1


class Progress:
    """Reports training progress on ``stream``; silent when ``verbose`` is false."""

    def __init__(self, epochs, batches, verbose=True, stream=None):
        """``batches`` per epoch, or None where the data do not say."""
        self.epochs, self.batches, self.verbose = epochs, batches, verbose
        self.stream = stream if stream is not None else sys.stdout
        self.live = verbose and getattr(self.stream, "isatty", lambda: False)()
        self._epoch, self._started, self._shown = 0, 0.0, 0.0

    def start_epoch(self, epoch):
        self._epoch, self._started, self._shown = epoch, time.perf_counter(), 0.0

    def batch_done(self, done):
        """Redraw the bar (terminal only, at most every REFRESH_SECONDS)."""
        if not self.live:
            return
        now = time.perf_counter()
        total = self.batches
        if now - self._shown < REFRESH_SECONDS and (total is None or done < total):
            return
        self._shown = now
        if total is None:  # a data set that does not know its length: a count, no bar
            shown = f"{done} batches"
        else:
            filled = BAR_WIDTH * done // total
            shown = "[" + "#" * filled + "." * (BAR_WIDTH - filled) + f"] {done}/{total}"
        self.stream.write(f"\repoch {self._epoch}/{self.epochs} {shown} "
                          f"{now - self._started:.1f}s")
        self.stream.flush()

    def message(self, line):
        """Print ``line`` (replacing the bar on a terminal)."""
        if self.verbose:
            self.stream.write(("\r\033[K" if self.live else "") + line + "\n")
            self.stream.flush()
