#!/usr/bin/env python3
"""Real Kafka client traffic for strata's end-to-end tests (kafka-python).

Usage: python3 client.py <port> <topic>

Creates <topic> (1 partition) on the broker at 127.0.0.1:<port> if it is not there yet, produces b"one",
b"two", b"three" with acks=1, then fetches the topic from the beginning without a consumer group and prints
each value on a line. Exits 0 only if the three values came back in order.

Set STRATA_KAFKA_DEBUG=1 to log every request kafka-python sends (with its API version) on stderr.
"""

import logging
import os
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import TopicAlreadyExistsError

VALUES = [b"one", b"two", b"three"]
TIMEOUT_S = 10.0


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: client.py <port> <topic>", file=sys.stderr)
        return 2
    bootstrap = f"127.0.0.1:{int(sys.argv[1])}"
    topic = sys.argv[2]
    if os.environ.get("STRATA_KAFKA_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)

    # Explicit creation: the test does not rely on the broker auto-creating topics.
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(TIMEOUT_S * 1000))
    try:
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    futures = [producer.send(topic, value=v, partition=0) for v in VALUES]
    producer.flush(timeout=TIMEOUT_S)
    for f in futures:
        f.get(timeout=TIMEOUT_S)  # raises if the broker rejected a record
    producer.close()

    # No group: assign the partition directly and read from the earliest offset.
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False
    )
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < len(VALUES) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(r.value for r in records)
    consumer.close()

    for v in got:
        print(v.decode(errors="replace"), flush=True)
    if got[: len(VALUES)] != VALUES:
        print(f"expected {VALUES!r}, got {got!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
