"""The loop every benchmark scorer runs over its samples: Ctrl-C stops it cleanly, a progress bar
counts the images, an unreadable image or label is skipped and recorded (`read_sample`), and a run in
which every image was skipped is an error rather than a score of nothing."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from zss.errors import Interrupted, ZssError
from zss.eval.benchmarks import read_sample
from zss.utils.progress import progress_bar
from zss.utils.signals import StopRequest


def benchmark_images(name: str, samples: list[Any], skipped: list[dict[str, str]]
                     ) -> Iterator[tuple[Any, np.ndarray, np.ndarray, dict[str, str]]]:
    """Yield (sample, image, label, status) for each readable sample of benchmark `name`; the caller
    may put a progress note in status["info"] (shown beside the bar) and append its own skips to
    `skipped`. Raises Interrupted on Ctrl-C / SIGTERM and ZssError when every sample was skipped."""
    with StopRequest() as stop, progress_bar() as bar:
        task = bar.add_task(name, total=len(samples), info="", unit="images")
        for i, sample in enumerate(samples):
            if stop.signum is not None:
                raise Interrupted(stop.exit_code, f"interrupted during {name} after {i} of {len(samples)} "
                                                  "images; no results written")
            pair = read_sample(sample, skipped)
            status: dict[str, str] = {}
            if pair is not None:
                yield sample, pair[0], pair[1], status
            bar.update(task, advance=1, **({"info": status["info"]} if "info" in status else {}))
    if samples and len(skipped) == len(samples):
        raise ZssError(f"{name}: every image was skipped, e.g. {skipped[0]['label']}: {skipped[0]['problem']}")
