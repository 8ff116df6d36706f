"""The benchmark suite: each scenario with real sockets and files, beside bare baselines."""
