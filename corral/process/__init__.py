"""Processes, not HTTP: the master and its worker processes, the slot table they share,
exit codes, process set-up (logging, user, heap), and the --reload supervisor."""
