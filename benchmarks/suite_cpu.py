"""Where the test suite's time goes: CPU seconds per test and per file, the processes a test started included.

    .venv/bin/python benchmarks/suite_cpu.py [PYTEST ARGS ...]     # default: the whole suite, as bin/test runs it

On a machine whose cores the suite keeps busy (2 cores, 2 pytest-xdist workers), a test's wall time says more
about what ran beside it than about the test; its CPU time does not. Each test's CPU is this process's user and
system time over the test plus that of the child processes it started and waited for (`getrusage`: a
`chatbot` command, a server stopped at the end of a module, a Chromium). Writes
`benchmarks/results/suite_cpu.json` (every test) and prints the files and the tests that cost most.
It is also a pytest plugin (``-p suite_cpu`` with this folder on PYTHONPATH), which is how it measures.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
LOG = "SUITE_CPU_LOG"  # the JSON-lines file the workers append to


def _cpu_seconds() -> tuple[float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Setup, call and teardown of one test: the CPU it and its children used, and its wall time."""
    own, children = _cpu_seconds()
    started = time.monotonic()
    yield
    own_after, children_after = _cpu_seconds()
    if os.environ.get(LOG):
        record = {"test": item.nodeid, "own": own_after - own, "children": children_after - children, "wall": time.monotonic() - started}
        with open(os.environ[LOG], "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")


def main() -> int:
    repo = HERE.parent
    log = repo / "storage" / "suite_cpu.jsonl"
    log.parent.mkdir(exist_ok=True)
    log.unlink(missing_ok=True)
    os.environ[LOG] = str(log)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))  # the workers import it
    sys.path.insert(0, str(HERE))
    started = time.monotonic()
    args = sys.argv[1:] or ["-n", "auto", "--dist", "worksteal", "-q", "-p", "no:cacheprovider"]
    status = pytest.main(["-p", "suite_cpu", *args], plugins=[])
    wall = time.monotonic() - started
    tests = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    by_file: Counter = Counter()
    for test in tests:
        by_file[test["test"].split("::")[0]] += test["own"] + test["children"]
    total = sum(by_file.values())
    print(f"\n{len(tests)} tests, {wall:.0f} s wall, {total:.0f} CPU seconds measured ({os.cpu_count()} cores)")
    for name, seconds in by_file.most_common(15):
        print(f"{seconds:8.1f} s  {seconds / max(total, 1e-9):5.1%}  {name}")
    print("the 15 tests that cost most:")
    for test in sorted(tests, key=lambda t: -(t["own"] + t["children"]))[:15]:
        print(f"{test['own'] + test['children']:8.1f} s  (wall {test['wall']:5.1f} s)  {test['test']}")
    results = HERE / "results" / "suite_cpu.json"
    machine = {"cores": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()}
    results.write_text(json.dumps({"machine": machine, "args": args, "wall_seconds": round(wall, 1), "tests": tests}, indent=1) + "\n")
    print(f"results: {results}")
    return int(status)


if __name__ == "__main__":
    raise SystemExit(main())
