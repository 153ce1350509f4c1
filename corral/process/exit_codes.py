"""The exit statuses of the `corral` command, and of a worker process to its master.

README.md's "Exit status" section lists them for operators; gunicorn uses 3 and 4 the same
way, so supervisors written for it read corral's the same.
"""

from __future__ import annotations

OK = 0
# A listening address, the pid file, or anything else failed while running.
RUNTIME_ERROR = 1
# The command line, the config file or a CORRAL_* variable is wrong.
USAGE_ERROR = 2
# A worker process could not boot (its app does not load); the master does not respawn it,
# since the next one would fail the same way.
WORKER_BOOT_ERROR = 3
# The application cannot be loaded, so nothing can serve: the command's status when the
# app fails to import, or when the master's first workers cannot boot.
APP_LOAD_ERROR = 4
