"""The worker's main process: the bootstep that reports snapshots, and /proc readings."""
