"""Benchmarks: one script per question of the cost/accuracy claims (see README, `make bench`)."""
