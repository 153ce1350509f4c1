"""Processes, not HTTP: the master and its worker processes, their heartbeats and exit
codes, process set-up (logging, user, heap), and the --reload supervisor."""
