from wa_cloud.ratelimit import SlidingWindowLimiter


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_never_more_than_rate_in_any_window():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(5, clock=clock, sleep=clock.sleep, margin=0.0)
    starts = []
    for _ in range(23):
        limiter.acquire()
        starts.append(clock.now)
    for i, start in enumerate(starts):
        assert sum(1 for t in starts[i:] if t - start < 1.0) <= 5


def test_full_rate_is_reached():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(10, clock=clock, sleep=clock.sleep, margin=0.0)
    for _ in range(30):
        limiter.acquire()
    # 30 calls at 10/s: the first 10 at once, then two more windows.
    assert clock.now - 100.0 == 2.0


def test_try_acquire_and_wait_time():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(2, clock=clock, sleep=clock.sleep, margin=0.0)
    assert limiter.try_acquire()
    clock.now += 0.25
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    assert limiter.wait_time() == 0.75
    clock.now += 0.75
    assert limiter.try_acquire()


def test_drain_leaves_an_empty_window():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, clock=clock, sleep=clock.sleep, margin=0.0)
    limiter.acquire()
    clock.now += 0.4
    limiter.drain()
    assert clock.now == 101.0
    assert limiter.wait_time() == 0.0


def test_rate_must_be_positive():
    import pytest

    with pytest.raises(ValueError):
        SlidingWindowLimiter(0)
