"""The Python reference adapter (baldur-framework) on the benchmark's workloads.

Usage: python_baseline.py URL
Reads lines "WORKLOAD SECONDS" on stdin and answers each with one line: the
workload's operations per second over that many seconds. Staying up between
requests lets baldur-bench measure each workload right next to its own. The
workloads and their data match Sources/BaldurBench exactly.
"""

import sys
import time
from datetime import timedelta

import logging
logging.disable(logging.CRITICAL)
import structlog  # noqa: E402
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))

from baldur.adapters.cache.redis_adapter import RedisCacheAdapter  # noqa: E402

RECORD = {"id": 42, "status": "executing", "started_at": 1732640000.5, "attempt": 3, "tags": ["a", "b"]}
url = sys.argv[1]
cache = RedisCacheAdapter(url=url, key_prefix="bench:py:")
keys = [f"k{i}" for i in range(100)]
mapping = {k: RECORD for k in keys}
cache.set("record", RECORD)
cache.mset(mapping)
cache.set("cas", {"status": "a"})


def cas_once(state=[0]):
    state[0] ^= 1
    old, new = ("a", "b") if state[0] else ("b", "a")
    cache.cas_dict_field("cas", "status", old, {"status": new})


def lock_once():
    lock = cache.get_lock("lock", timeout=timedelta(seconds=10))
    lock.acquire(blocking=False)
    lock.release()


OPS = {
    "get": lambda: cache.get("record"),
    "set": lambda: cache.set("record", RECORD),
    "mget100": lambda: cache.mget(keys),
    "mset100": lambda: cache.mset(mapping),
    "mset100-ttl": lambda: cache.mset(mapping, timedelta(seconds=60)),
    "pushLimit": lambda: cache.push_limit("list", RECORD, 100, timedelta(seconds=60)),
    "casDictField": cas_once,
    "incr": lambda: cache.incr("counter"),
    "lock": lock_once,
}

def rate(name, seconds):
    op = OPS[name]
    for _ in range(200):
        op()
    count = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        for _ in range(50):
            op()
        count += 50
    return count / (time.perf_counter() - start)


for line in sys.stdin:
    name, seconds = line.split()
    print(rate(name, float(seconds)), flush=True)
cache.flush_all()
