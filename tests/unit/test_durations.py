import pytest

from openbell.durations import human_duration, parse_duration_s, promql_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("30d", 2_592_000), ("1h30m", 5400), ("250ms", 0.25), ("2w", 1_209_600), ("90", 90), (15, 15), ("1y", 31_536_000),
])
def test_parse(text, seconds):
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "30 days", "1h-5m", "0s", "-5m", "5M", True])
def test_parse_rejects(bad):
    with pytest.raises(ValueError, match="expected"):
        parse_duration_s(bad)


@pytest.mark.parametrize(("seconds", "text"), [
    (3600, "1h"), (5400, "1h30m"), (300, "5m"), (2_592_000, "4w2d"), (0.25, "250ms"), (241_920, "2d19h12m"),
])
def test_promql_duration(seconds, text):
    assert promql_duration(seconds) == text
    assert parse_duration_s(text) == pytest.approx(seconds)


def test_human_duration():
    assert human_duration(51.84) == "51.8s"
    assert human_duration(5.184) == "5.18s"
    assert human_duration(5400) == "1h 30m"
