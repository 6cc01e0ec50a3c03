import os
import subprocess
import sys

from fish_classifier.cpus import cpu_threads, process_running, usable_cpus


def test_usable_cpus_are_the_ones_this_process_may_run_on():
    assert usable_cpus() == len(os.sched_getaffinity(0)) >= 1


def test_cpu_threads_follow_the_limit_repro_jobs_give_else_every_usable_cpu(monkeypatch):
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "3")
    assert cpu_threads() == 3
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS")
    assert cpu_threads() == usable_cpus()


def test_a_process_runs_until_it_has_ended():
    assert process_running(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no process now
    assert not process_running(child.pid)


def test_pid_zero_or_below_or_past_the_kernels_range_is_no_process():
    # os.kill(0, ...) or a negative pid would ask about a process group, not a process.
    assert not process_running(0) and not process_running(-1)
    assert not process_running(2**63)
