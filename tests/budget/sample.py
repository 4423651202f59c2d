"""Samples a server's client backends every 10 ms until stopped (SIGTERM) and prints the peak:
pgisolate's own connections (admin and lease), the tests' (application_name pgisolate/…), all."""

import signal
import sys
import time

import psycopg

url = sys.argv[1]
peak = {"own": 0, "tests": 0, "all": 0}
at_peak = []  # (application_name, count) when pgisolate's own connections peaked
stop = False


def done(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, done)
with psycopg.connect(url, autocommit=True, application_name="budget-sampler") as c:
    while not stop:
        own, tests, total = c.execute(
            "select count(*) filter (where application_name = 'pgisolate-lease' or application_name like 'pgisolate-admin%'), "
            "count(*) filter (where application_name like 'pgisolate/%%'), count(*) - 1 "
            "from pg_stat_activity where backend_type = 'client backend'"
        ).fetchone()
        if own > peak["own"]:
            at_peak = c.execute(
                "select application_name, count(*) from pg_stat_activity "
                "where backend_type = 'client backend' and application_name like 'pgisolate-%%' "
                "group by 1 order by 2 desc, 1"
            ).fetchall()
        for k, v in (("own", own), ("tests", tests), ("all", total)):
            peak[k] = max(peak[k], v)
        time.sleep(0.01)
print(f"peak own={peak['own']} tests={peak['tests']} all={peak['all']}", flush=True)
# Per engine at the peak of pgisolate's own (read again just after it: close to, not exactly, it).
shown = ", ".join(f"{app.removeprefix('pgisolate-')} {n}" for app, n in at_peak if n > 1 or app == "pgisolate-lease")
print(f"at the peak: {shown}", flush=True)
