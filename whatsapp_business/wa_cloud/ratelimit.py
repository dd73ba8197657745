"""A sliding-window rate limiter that never lets more than N calls start in a window."""

import collections
import threading
import time


class SlidingWindowLimiter:
    """At most `rate` acquisitions in any `window` seconds.

    A token bucket lets a full bucket burst on top of the steady rate; a sliding
    window does not, which is what "never more than N per second" asks for.
    The margin absorbs clock and network jitter between us and Meta's counter.
    """

    def __init__(
        self, rate, window=1.0, *, margin=0.01, clock=time.monotonic, sleep=time.sleep
    ):
        if rate < 1:
            raise ValueError("rate must be at least 1")
        self.rate = int(rate)
        self.window = float(window) + margin
        self._clock = clock
        self._sleep = sleep
        self._starts = collections.deque()
        self._lock = threading.Lock()

    def wait_time(self):
        """Seconds to wait before the next call may start (0 when it may now)."""
        now = self._clock()
        with self._lock:
            while self._starts and now - self._starts[0] >= self.window:
                self._starts.popleft()
            if len(self._starts) < self.rate:
                return 0.0
            return self.window - (now - self._starts[0])

    def try_acquire(self):
        now = self._clock()
        with self._lock:
            while self._starts and now - self._starts[0] >= self.window:
                self._starts.popleft()
            if len(self._starts) < self.rate:
                self._starts.append(now)
                return True
            return False

    def acquire(self):
        """Block until a call may start, then count it."""
        while not self.try_acquire():
            self._sleep(max(self.wait_time(), 0.001))

    def drain(self):
        """Block until no call is left in the window (the next user starts clean)."""
        with self._lock:
            last = self._starts[-1] if self._starts else None
        if last is not None:
            remaining = self.window - (self._clock() - last)
            if remaining > 0:
                self._sleep(remaining)
