"""The order the suite's tests are handed to pytest-xdist's workers in: the known-long tests
spread over the workers' shares and at the head of each, so no long test starts near the end.

`make test` runs `--dist worksteal`, which first gives each worker a contiguous share of the
collected tests (the first n/k to the first worker, and so on) and later lets an idle worker take
the tail of another's queue. Collected as written (file by file), the long tests bunch up in one
or two shares and one of them may start last, stretching the wall time by its length. Here each
share starts with its part of the long tests (dealt longest first, each to the share with the
least expected time so far), and the other tests keep their order behind them. Every worker
computes the same order from the same collection, as xdist requires. Outside xdist (`-n 0`,
plain `pytest`) the order is left alone."""

from __future__ import annotations

import os

import pytest

# Seconds each run of a test takes, roughly: its CPU time measured in one process (`-n 0`,
# docs/testing.md says how), which under `make test` is about its share of a core. A node id
# prefix matches every parameter of the test. Only the order of magnitude matters: a test
# missing here is treated as short and only scheduled less well.
LONG = {
    "tests/commands/test_credit_equivalence.py::test_holds_equal_the_reference_books": 27,
    "tests/commands/test_credit_properties.py::test_credit_invariants[postgresql]": 13,
    "tests/bot/test_pacing.py::test_a_burst_of_requests_yields_every_card_once": 9,
    "tests/bot/test_demo_ec2.py::": 5,
    "tests/bot/test_operations.py::": 6,
    "tests/commands/test_credit_properties.py::test_credit_invariants[sqlite]": 6,
    "tests/bot/test_inbox.py::test_a_click_whose_replica_is_alive_but_slow": 5,
    "tests/bot/test_inbox.py::test_a_click_acked_by_a_replica_killed": 6,
    "tests/bot/test_authorization.py::test_authorization_matrix[postgresql": 5,
    "tests/bot/test_cli.py::test_the_demo_tells_a_whole_story": 5,
    "tests/bot/test_demo.py::": 4,
    "tests/bot/test_report.py::test_the_exported_site_in_a_browser": 4,
    "tests/bot/test_socket_mode.py::test_a_request_an_approval_a_reconnect": 3,
    "tests/metal/test_ec2.py::test_create_launches_one_tagged_instance": 2,
    "tests/commands/test_replicas.py::": 4,
    "tests/bot/test_serve.py::test_serve_answers_slack_and_stops_cleanly": 4,
    "tests/bot/test_authorization.py::test_authorization_matrix[sqlite": 3,
    "tests/bot/test_large_leases.py::test_show_pages_through_every_server_exactly_once": 3,
}


def expected_seconds(item: pytest.Item) -> float:
    return next((s for prefix, s in LONG.items() if item.nodeid.startswith(prefix)), 0.0)


def share_sizes(total: int, workers: int) -> list[int]:
    """How many tests worksteal first sends each worker: what is left split evenly, in turn."""
    sizes = []
    for remaining in range(workers, 0, -1):
        sizes.append((total - sum(sizes)) // remaining)
    return sizes


def long_first(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    """`items` reordered so each worker's first share starts with its part of the long tests."""
    sizes = share_sizes(len(items), workers)
    long = sorted((i for i in items if expected_seconds(i)), key=expected_seconds, reverse=True)
    shares: list[list[pytest.Item]] = [[] for _ in sizes]
    load = [0.0] * workers
    for item in long:
        # the least loaded share that still has room (a share holds at most its size)
        room = [w for w in range(workers) if len(shares[w]) < sizes[w]]
        target = min(room, key=lambda w: load[w])
        shares[target].append(item)
        load[target] += expected_seconds(item)
    rest = iter(i for i in items if not expected_seconds(i))
    for share, size in zip(shares, sizes, strict=True):
        share.extend(next(rest) for _ in range(size - len(share)))
    return [item for share in shares for item in share]


def reorder(items: list[pytest.Item]) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        items[:] = long_first(items, workers)
