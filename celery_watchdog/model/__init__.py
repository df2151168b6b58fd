"""Plain data and pure decisions, no I/O: records, rules, plans, diagnosis, wording helpers."""
