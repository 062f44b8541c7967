"""Once per server process: start the training workers and warm what every first run would
otherwise wait for; at shutdown, end the idle workers (busy ones are daemon processes: they end
with the server process)."""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import asynccontextmanager

log = logging.getLogger("dllab.server")


def prepare() -> None:
    """Workers import torch (seconds each); kernels, data and the speed estimate warm up
    beside them, off the event loop, so no learner's first Train click pays for them."""
    import torch

    from labs.core import data
    from labs.core.budget import measured_speed
    from labs.core.device import configure_threads, warm_up
    from labs.core.runner import SLOTS, default_executor
    from labs.core.workers import POOL
    from server.routes import plotly_gzipped

    configure_threads()
    measured_speed("cpu")  # before the workers start importing torch beside it
    if torch.cuda.is_available():
        measured_speed("cuda")
    if default_executor() is POOL:  # one worker per run that may train at once
        gpu_runs = SLOTS["cuda"].limit if torch.cuda.is_available() else 0
        POOL.prestart(SLOTS["cpu"].limit + gpu_runs)
    data.mnist_subset()  # writes the .npz cache that workers then read in milliseconds
    plotly_gzipped()  # every page fetches it: compress it before the first learner asks
    warm_up()


def shut_down() -> None:
    from labs.core.workers import POOL

    POOL.close()


@asynccontextmanager
async def lifespan(app):
    threading.Thread(target=prepare, daemon=True, name="warm-up").start()
    log.info("Deep Learning Lab: workers starting")
    yield
    await asyncio.to_thread(shut_down)
