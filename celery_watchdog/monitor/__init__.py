"""One monitor pass: load due runs, judge, claim, act."""
