"""Local stand-ins of the three APIs buzzbotd talks to, for tests and `make demo`."""

from tests.fakes.base import FakeAPI, Fault, Request, Response

__all__ = ["Fault", "FakeAPI", "Request", "Response"]
