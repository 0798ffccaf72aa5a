"""A bounded soak: mixed traffic must not grow memory or leak descriptors (bench/soak.py runs 50k)."""

from bench.soak import FD_BOUND, RSS_BOUND_KB, soak


def test_mixed_traffic_keeps_memory_and_descriptors_bounded():
    """3,000 mixed requests after a 1,000-request warm-up; the bounds are the ones documented for 50k."""
    result = soak(3000, workers=4, warmup=1000)
    assert set(result["statuses"]) <= {200, 201, 204}, result["statuses"]
    assert result["requests"] >= 3000 * 0.9
    assert result["rss_growth_kb"] <= RSS_BOUND_KB, result
    assert result["fds_after"] <= result["fds_before"] + FD_BOUND, result
    assert result["exit_code"] == 0
