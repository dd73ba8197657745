import pytest
from fake_time import FakeTime

from wa_cloud.ratelimit import SlidingWindowLimiter


def limiter(rate, clock, margin=0.0):
    return SlidingWindowLimiter(rate, clock=clock, sleep=clock.sleep, margin=margin)


def test_never_more_than_rate_in_any_window():
    clock = FakeTime(100.0)
    pacer = limiter(5, clock, margin=0.02)
    starts = []
    for _ in range(23):
        pacer.acquire()
        starts.append(clock.now)
    for i, start in enumerate(starts):
        assert sum(1 for t in starts[i:] if t - start < 1.0) <= 5


def test_starts_are_evenly_spaced_at_full_rate():
    clock = FakeTime(100.0)
    pacer = limiter(10, clock)
    starts = []
    for _ in range(30):
        pacer.acquire()
        starts.append(clock.now)
    gaps = {round(b - a, 9) for a, b in zip(starts, starts[1:], strict=False)}
    assert gaps == {0.1}
    # 30 starts at 10/s take 2.9 s: no burst, no idle time.
    assert round(starts[-1] - starts[0], 9) == 2.9


def test_try_acquire_and_wait_time():
    clock = FakeTime(100.0)
    pacer = limiter(2, clock)
    assert pacer.try_acquire()
    assert not pacer.try_acquire()
    assert pacer.wait_time() == 0.5
    clock.now += 0.5
    assert pacer.try_acquire()
    assert not pacer.try_acquire()


def test_pause_holds_every_caller():
    clock = FakeTime(100.0)
    pacer = limiter(100, clock)
    pacer.acquire()
    pacer.pause(2.0)
    assert pacer.wait_time() == pytest.approx(2.0)
    pacer.acquire()
    assert clock.now == pytest.approx(102.0)


def test_drain_leaves_an_empty_window():
    clock = FakeTime(100.0)
    pacer = limiter(3, clock)
    pacer.acquire()
    clock.now += 0.4
    pacer.drain()
    assert clock.now == pytest.approx(101.0)
    assert pacer.wait_time() == 0.0


def test_rate_must_be_positive():
    with pytest.raises(ValueError):
        SlidingWindowLimiter(0)


def test_late_starts_do_not_lower_the_average_rate():
    clock = FakeTime(100.0)
    pacer = limiter(10, clock)
    starts = []
    for i in range(20):
        pacer.acquire()
        starts.append(clock.now)
        if i % 2:
            clock.now += 0.03  # the caller got the CPU late
    # 20 starts at 10/s span 1.9 s whatever the lateness, never more than 10 a second.
    assert round(starts[-1] - starts[0], 9) <= 1.9 + 1e-9
    for i, start in enumerate(starts):
        assert sum(1 for t in starts[i:] if t - start < 1.0) <= 10
