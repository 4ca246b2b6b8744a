"""The worker's consumer acks every processed message (common.broker: acks posted in batches) and no other."""

from __future__ import annotations

import threading
import time
from collections import Counter

import dramatiq
import pika

from common.broker import make_broker

N = 300


def _queue_counts(url: str, queue: str) -> tuple[int, int]:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ok = conn.channel().queue_declare(queue, passive=True)
        return ok.method.message_count, ok.method.consumer_count
    finally:
        conn.close()


def test_every_message_is_acked_once_by_many_threads_and_none_is_redelivered(amqp_url: str) -> None:
    broker = make_broker(amqp_url)
    seen: Counter[int] = Counter()
    lock = threading.Lock()
    done = threading.Event()

    @dramatiq.actor(queue_name="ack-test", broker=broker, max_retries=0)
    def work(i: int) -> None:
        time.sleep(0.001 * (i % 7))  # finishes out of order
        with lock:
            seen[i] += 1
            if len(seen) == N:
                done.set()

    for i in range(N):
        work.send(i)
    worker = dramatiq.Worker(broker, queues={"ack-test"}, worker_threads=16)
    worker.start()
    try:
        assert done.wait(60), f"{len(seen)} of {N} processed"
    finally:
        worker.stop(timeout=30_000)
        broker.close()
    # Stopping the worker closes its connection: anything processed but not acked would be back in the queue.
    ready, consumers = _queue_counts(amqp_url, "ack-test")
    assert (ready, consumers) == (0, 0), f"{ready} messages back in the queue after processing"
    assert set(seen.values()) == {1} and len(seen) == N
