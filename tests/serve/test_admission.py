"""Admission counts, Busy and Retry-After with hand-computed values."""

from __future__ import annotations

import pytest

from zss.serve.admission import Admission, Busy


def test_admits_up_to_the_limit_then_busy_with_retry_after():
    adm = Admission(limit=2, smoothing=0.5)
    adm.enter()
    adm.enter()
    with pytest.raises(Busy) as busy:
        adm.enter()
    # 2 inside, 1.0 s per request before any was measured: ceil(2 * 1.0) = 2 s
    assert busy.value.queued == 2 and busy.value.retry_after == 2 and adm.refused == 1
    assert str(busy.value) == "server busy: 2 request(s) ahead; retry in 2 s"
    adm.observe(3.0)                      # 1.0 + 0.5 * (3.0 - 1.0) = 2.0 s
    adm.observe(0.0)                      # 2.0 + 0.5 * (0.0 - 2.0) = 1.0 s
    adm.observe(2.6)                      # 1.0 + 0.5 * 1.6 = 1.8 s
    assert adm.seconds == pytest.approx(1.8)
    with pytest.raises(Busy) as busy:
        adm.enter()
    assert busy.value.retry_after == 4   # ceil(2 * 1.8)
    adm.leave()
    with adm.admitted():
        assert adm.inside == 2
    assert adm.inside == 1


def test_retry_after_is_clipped():
    adm = Admission(limit=1)
    adm.seconds = 0.01
    assert adm.retry_after(3) == 1        # never 0: a client would hammer
    adm.seconds = 100.0
    assert adm.retry_after(3) == 60
    with pytest.raises(ValueError):
        Admission(limit=0)
