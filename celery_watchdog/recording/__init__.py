"""In the task's process: the run handle, the write-behind recorder, signal receivers,
WatchedTask."""
