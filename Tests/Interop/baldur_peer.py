"""A Python Baldur peer for the interop tests.

Reads a JSON list of operations on stdin, runs each with the reference
adapter (baldur-framework's RedisCacheAdapter) against BALDUR_PEER_URL, and
prints a JSON list of results, one per operation:
  {"ok": <result>}  or  {"error": "<type>: <message>"}

Each operation is an object with "op" and its arguments, plus optional
"prefix" (absent: dynamic; "": none; other: literal) and "synthetic" (run
inside TestModeContext.start()). Logging goes to stderr, never stdout.
"""

import json
import logging
import os
import sys
from contextlib import nullcontext
from datetime import timedelta

logging.basicConfig(stream=sys.stderr, level=logging.CRITICAL)
import structlog  # noqa: E402

structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))

from baldur.adapters.cache.redis_adapter import RedisCacheAdapter, RedisDistributedLock  # noqa: E402
from baldur.core.test_mode_context import TestModeContext  # noqa: E402

URL = os.environ["BALDUR_PEER_URL"]
_adapters = {}


def adapter(prefix_given, prefix):
    slot = (prefix_given, prefix)
    if slot not in _adapters:
        _adapters[slot] = RedisCacheAdapter(url=URL, key_prefix=prefix if prefix_given else None)
    return _adapters[slot]


def ttl(seconds):
    return timedelta(seconds=seconds) if seconds is not None else None


def run(op):
    cache = adapter("prefix" in op, op.get("prefix"))
    name = op["op"]
    if name == "storage_key":
        return cache._make_key(op["key"])
    if name == "set":
        return cache.set(op["key"], op["value"], ttl(op.get("ttl")))
    if name == "get":
        return cache.get(op["key"])
    if name == "raw_get":
        raw = cache.raw_client.get(op["full_key"])
        return None if raw is None else raw.decode("utf-8")
    if name == "hset":
        return cache.hset(op["name"], op["field"], op["value"])
    if name == "hget":
        return cache.hget(op["name"], op["field"])
    if name == "hgetall":
        return cache.hgetall(op["name"])
    if name == "push_limit":
        return cache.push_limit(op["key"], op["value"], op["max_len"], ttl(op.get("ttl")))
    if name == "list_range":
        return cache.list_range(op["key"], op["start"], op["end"])
    if name == "incr":
        return cache.incr(op["key"], op.get("amount", 1))
    if name == "decr":
        return cache.decr(op["key"], op.get("amount", 1))
    if name == "ttl":
        return cache.ttl(op["key"])
    if name == "cas_dict_field":
        return cache.cas_dict_field(op["key"], op["field"], op["expected"], op["new_value"], ttl(op.get("ttl")))
    if name == "cas_takeover":
        return cache.cas_takeover(op["key"], op["new_record"], stale_before=op["stale_before"], ttl=ttl(op.get("ttl")))
    if name == "lock_acquire":
        lock = cache.get_lock(op["name"], timeout=timedelta(milliseconds=op["timeout_ms"]))
        acquired = lock.acquire(blocking=op.get("blocking", False), timeout=op.get("wait"))
        return {"acquired": acquired, "owner": lock._owner_id, "key": lock._name}
    if name == "lock_release_as":
        # Release the lock as the owner token given (a handle from an earlier run).
        lock = cache.get_lock(op["name"])
        lock._owner_id = op["owner"]
        lock._acquired = True
        lock.release()
        return cache.raw_client.exists(lock._name) == 0
    if name == "lock_locked":
        return cache.get_lock(op["name"]).locked()
    raise ValueError(f"unknown op {name}")


def main():
    results = []
    for op in json.load(sys.stdin):
        scope = TestModeContext.start() if op.get("synthetic") else nullcontext()
        try:
            with scope:
                results.append({"ok": run(op)})
        except Exception as error:  # reported to the Swift side, never swallowed
            results.append({"error": f"{type(error).__name__}: {error}"})
    json.dump(results, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
