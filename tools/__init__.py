"""Developer tools run by make, not by pytest: `make bench` (bench.py), `make demo`
(demo.py), and the kill -9 and failover trials (crash_trials.py, failover_trials.py)
that `make trials` and the bench run at length. They build on tests/support/."""
