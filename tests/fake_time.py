"""A clock for the pure tests: it only moves when the code under test sleeps."""


class FakeTime:
    def __init__(self, start=0.0):
        self.now = start
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self):
        return self.now

    # Usable directly as a clock callable too.
    __call__ = clock
