"""The readers-writer lock (index.rwlock): readers share, a writer is alone."""

from __future__ import annotations

import threading
import time

from index.rwlock import RWLock


def test_readers_share_and_a_writer_waits_for_them() -> None:
    lock = RWLock()
    inside: list[str] = []
    both_reading = threading.Barrier(2, timeout=5)

    def reader(name: str) -> None:
        with lock.read():
            both_reading.wait()  # would time out if readers excluded each other
            inside.append(name)
            time.sleep(0.05)

    def writer() -> None:
        with lock.write():
            inside.append("writer")

    readers = [threading.Thread(target=reader, args=(n,)) for n in ("r1", "r2")]
    for t in readers:
        t.start()
    time.sleep(0.01)
    w = threading.Thread(target=writer)
    w.start()
    for t in [*readers, w]:
        t.join(5)
    assert inside[-1] == "writer" and sorted(inside[:2]) == ["r1", "r2"]


def test_a_reader_waits_for_the_writer() -> None:
    lock = RWLock()
    order: list[str] = []
    writing = threading.Event()

    def writer() -> None:
        with lock.write():
            writing.set()
            time.sleep(0.05)
            order.append("write done")

    w = threading.Thread(target=writer)
    w.start()
    writing.wait(5)
    with lock.read():
        order.append("read")
    w.join(5)
    assert order == ["write done", "read"]
