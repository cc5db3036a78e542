"""A quixstreams app with a stateful aggregation, run by integration/quixstreams_test.go.

It reads sensor readings (key: sensor id, value: JSON {"reading": n}), keeps each
sensor's count and total in a state store, and writes them to the output topic
(key: sensor id, value: JSON {"count": c, "total": t}). quixstreams backs the state
store with a changelog topic (cleanup.policy=compact) on the broker, so a run whose
state dir was wiped restores the totals from the broker.

A run stops once it has processed --count readings (or after --timeout seconds
with no new message) and commits on the way out, so the test runs it in phases.

Usage: app.py --input T --output T --group G --state-dir DIR --count N [--timeout S]
The broker address comes from SHARDCACHE_BOOTSTRAP.
"""

import argparse
import logging
import os
import sys

from quixstreams import Application, State


def add_reading(value: dict, state: State) -> dict:
    """Folds one reading into the sensor's count and total (the state is per key)."""
    count = state.get("count", 0) + 1
    total = state.get("total", 0) + int(value["reading"])
    state.set("count", count)
    state.set("total", total)
    return {"count": count, "total": total}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()
    bootstrap = os.environ.get("SHARDCACHE_BOOTSTRAP")
    if not bootstrap:
        print("app.py: SHARDCACHE_BOOTSTRAP is not set", file=sys.stderr)
        return 2
    if args.count <= 0:
        print("app.py: --count must be positive", file=sys.stderr)
        return 2

    app = Application(
        broker_address=bootstrap,
        consumer_group=args.group,
        state_dir=args.state_dir,
        auto_offset_reset="earliest",
        # The test creates the topics; the changelog topics are quixstreams' own.
        auto_create_topics=True,
        commit_interval=0.5,
        loglevel="INFO",
    )
    readings = app.topic(args.input, key_deserializer="str", value_deserializer="json")
    totals = app.topic(args.output, key_serializer="str", value_serializer="json")
    sdf = app.dataframe(readings)
    sdf = sdf.apply(add_reading, stateful=True)
    sdf.to_topic(totals)
    app.run(count=args.count, timeout=args.timeout, collect=False)
    return 0


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr)
    sys.exit(main())
