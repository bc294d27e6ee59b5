"""Moves this process's clock ahead by TEST_CLOCK_OFFSET seconds, as `pytest --clock-offset` does.

`pytest --clock-offset` puts this directory on PYTHONPATH, so every Python process the tests
start (`mailer worker`, `mailer deliver`, gunicorn) imports this file at start-up and reads the
same moved clock as the tests. time-machine moves only the wall clock (time.time, datetime.now);
the monotonic clock behind sleeps and timed waits keeps running as it is (libfaketime would make
those waits last the whole offset).
"""

import os
import time

if offset := float(os.environ.get("TEST_CLOCK_OFFSET") or 0):
    import time_machine

    time_machine.travel(time.time() + offset, tick=True).start()
