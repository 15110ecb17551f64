"""The Locust user of ``benchmarks/serving.py``'s load test: keep-alive clients sending top-k queries (real test
facts, by id) to ``POST /v1/runs/RUN/topk`` of a running ``kgdistill serve``, with no wait between requests.

Configured by the environment: ``LOAD_RUN`` (the served run's name), ``LOAD_BODIES`` (a JSON file: a list of
request bodies), ``LOAD_MAX_REQUESTS`` (stop the whole test after this many requests; the run time bounds it
too, with ``locust -t``; a watcher stops the runner once the count is reached, counted from the moment every
client has started, when ``--reset-stats`` clears the ramp-up's statistics), ``LOAD_STATS`` (where to write the
final statistics as JSON when Locust quits: requests, failures, requests/s, median and p99 latency in ms). A
response other than 200 counts as a failure.

The statistics come from Locust's own totals at exit, not from its ``--csv`` files: those are written only by a
periodic writer, so a short load level, on a busy machine, can end before any row after the reset is written.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import gevent
from locust import FastHttpUser, constant, events, task
from locust.env import Environment

from kgdistill.io import atomic_write_text

RUN = os.environ["LOAD_RUN"]
BODIES = [json.dumps(b).encode() for b in json.loads(Path(os.environ["LOAD_BODIES"]).read_text())]
MAX_REQUESTS = int(os.environ.get("LOAD_MAX_REQUESTS", "1000000"))
STATS = os.environ.get("LOAD_STATS")
_sent = [0]  # requests started at full load (greenlets switch only at I/O: no lock needed)
_full = [False]  # every client has started (``--reset-stats`` has cleared the ramp-up's statistics)
_HEADERS = {"content-type": "application/json"}


@events.test_start.add_listener
def _stop_after_max_requests(environment: Environment, **_: object) -> None:
    def watch() -> None:
        while not _full[0] or _sent[0] < MAX_REQUESTS:
            gevent.sleep(0.02)
        assert environment.runner is not None
        environment.runner.quit()

    gevent.spawn(watch)


@events.quitting.add_listener
def _write_final_stats(environment: Environment, **_: object) -> None:
    """Locust's totals since the reset, once the runner has stopped (``quitting`` fires before the exit)."""
    if STATS is None:
        return
    total = environment.stats.total
    stats = {
        "requests": total.num_requests,
        "failures": total.num_failures,
        "rps": total.total_rps,
        "p50_ms": total.get_response_time_percentile(0.5) if total.num_requests else None,
        "p99_ms": total.get_response_time_percentile(0.99) if total.num_requests else None,
    }
    atomic_write_text(Path(STATS), json.dumps(stats))


@events.spawning_complete.add_listener
def _count_from_full_load(**_: object) -> None:
    """``--reset-stats`` clears the statistics once every client has started; the request budget counts from
    there too, else a fast server spends it while the clients start and the table is left empty."""
    _sent[0] = 0
    _full[0] = True


class TopKClient(FastHttpUser):
    """One client: one connection, one request at a time, the next as soon as the answer is in."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self._bodies = itertools.cycle(BODIES[self.environment.runner.user_count % len(BODIES) :])

    @task
    def topk(self) -> None:
        if _full[0]:
            if _sent[0] >= MAX_REQUESTS:  # the watcher stops the test in a moment
                gevent.sleep(1)
                return
            _sent[0] += 1
        self.client.post(
            f"/v1/runs/{RUN}/topk", data=next(self._bodies), headers=_HEADERS, name="topk"
        )
