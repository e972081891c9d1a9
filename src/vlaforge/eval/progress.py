"""Episode progress of an evaluation, printed sparingly when the output is a log file."""

from __future__ import annotations

import sys

from vlaforge.eval.metrics import EpisodeResult


class Progress:
    """Episode progress: a tqdm bar on a terminal; otherwise (a log file) one line per tenth of the run."""

    def __init__(self, total: int, *, enabled: bool = True) -> None:
        self.total, self.done, self.successes = total, 0, 0
        self.enabled = enabled and total > 0
        self.every = max(1, total // 10)
        self.bar = None
        if self.enabled and sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="ep", desc="eval", dynamic_ncols=True, file=sys.stdout)

    def episode(self, result: EpisodeResult) -> None:
        self.done += 1
        self.successes += int(result.success)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"{self.successes}/{self.done} successes")
        elif self.enabled and (self.done % self.every == 0 or self.done == self.total):
            print(f"eval: {self.done}/{self.total} episodes, {self.successes} successes", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
