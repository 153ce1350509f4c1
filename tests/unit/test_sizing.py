"""The sizing advice from wall and CPU time (corral.serving.sizing)."""

from __future__ import annotations

from corral.serving.sizing import MAX_THREADS, advise


def test_an_application_waiting_on_io_is_advised_many_threads() -> None:
    # 2 ms of CPU in 50 ms: 25 requests keep a core busy.
    advice = advise([25.0] * 100, cores=2, current_workers=0, current_threads=4)
    assert (advice.workers, advice.threads) == (2, 25)
    assert advice.far_off
    assert "requests wait 96% of their time on I/O" in advice.text()
    assert "about 25 threads per process, one process per core" in advice.text()
    assert advice.text().endswith("you have 4")


def test_a_cpu_bound_application_is_advised_one_thread_per_core() -> None:
    advice = advise([1.02] * 100, cores=4, current_workers=4, current_threads=8)
    assert (advice.workers, advice.threads) == (4, 1)
    assert advice.far_off
    assert "about 4 workers × 1 thread would keep the CPUs busy; you have 4 × 8" in advice.text()


def test_waiting_for_other_threads_is_not_taken_for_io() -> None:
    # Sixteen threads computing: most requests waited for the others, a few did not.
    ratios = [16.0] * 85 + [1.1] * 15
    assert advise(ratios, cores=2, current_workers=0, current_threads=16).threads == 1


def test_a_setting_within_twice_the_advice_is_left_alone() -> None:
    advice = advise([5.0] * 10, cores=2, current_workers=2, current_threads=4)
    assert advice.concurrency == 10
    assert not advice.far_off


def test_the_advice_has_bounds() -> None:
    assert advise([1e9], 1, 0, 1).threads == MAX_THREADS
    assert advise([], 1, 0, 1).threads == 1
