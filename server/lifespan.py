"""Once per server process: start the training workers (or, on Ray, ready this process's Ray
workers) and warm what every first run would otherwise wait for; at shutdown, stop every run
and end every worker. A worker also ends by itself when its server process is gone (killed,
crashed): labs/core/workers.py."""

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
    from labs.core.runner import SLOT_SIZES, SLOTS, default_executor, on_ray
    from labs.core.workers import POOL
    from server.routes import plotly_gzipped

    configure_threads()
    measured_speed("cpu")  # before the workers start importing torch beside it
    if torch.cuda.is_available():
        measured_speed("cuda")
    if default_executor() is POOL:  # one worker per run that may train at once
        POOL.prestart(SLOTS["cpu"].limit)
        if torch.cuda.is_available():  # GPU runs get workers of their own: CPU ones never touch CUDA
            POOL.prestart(SLOTS["cuda"].limit, "cuda")
    elif on_ray():  # Ray workers belong to this process: ready as many as it may start at once
        from labs.core.cluster import RAY

        RAY.warm(SLOT_SIZES[0])
    data.mnist_subset()  # writes the .npz cache that workers then read in milliseconds
    plotly_gzipped()  # every page fetches it: compress it before the first learner asks
    warm_up()


def shut_down() -> None:
    """Stop every run (each keeps what it learned, for its page if the server comes back in
    time), then end every worker, busy ones too."""
    from labs.core.runner import on_ray, stop_every_run
    from labs.core.workers import POOL, STOP_GRACE_SECONDS

    stop_every_run(STOP_GRACE_SECONDS + 2)
    POOL.close()
    if on_ray():
        from labs.core.replica import disconnect

        disconnect()


@asynccontextmanager
async def lifespan(app):
    threading.Thread(target=prepare, daemon=True, name="warm-up").start()
    log.info("Deep Learning Lab: workers starting")
    yield
    await asyncio.to_thread(shut_down)
