"""Dynamic batching of chapter 19's served model (server/serving.py), measured (printed, never
asserted): answers a second and latency with batching off and on, for 1, 8 and 32 clients
asking at once, the endpoint asked directly (HTTP's own cost apart: the page's load test
measures through it).

    .venv/bin/python -m bench.serving
"""

from __future__ import annotations

import time

import numpy as np
import torch

from labs import production
from labs.core.device import configure_threads
from server import loadgen, serving

RULES = {"off": serving.Batching(1, 0), "on (32, 2 ms)": serving.Batching(32, 2)}


def main() -> None:
    configure_threads()
    torch.manual_seed(0)
    name, predict = production.predictor({"float32 (eager)": production.DigitNet(32).eval()})
    image = production.digits(0).X_test[:1].numpy()
    print(f"{name}, {torch.get_num_threads()} torch thread(s)\n")
    print("| clients | batching | answers/s | p50 ms | p99 ms | requests per model call |")
    print("|---|---|---|---|---|---|")
    for clients in (1, 8, 32):
        for label, rule in RULES.items():
            each = max(10, 640 // clients)
            start = time.perf_counter()
            endpoint = serving.Endpoint(predict, label, rule)
            latencies, calls = loadgen.in_process(endpoint, image, clients, each)
            rate = clients * each / (time.perf_counter() - start)
            print(
                f"| {clients} | {label} | {rate:.0f} | {np.median(latencies):.2f} | "
                f"{np.percentile(latencies, 99):.2f} | {clients * each / calls:.1f} |"
            )


if __name__ == "__main__":
    main()
