"""Option parsing with Docker's grammar, units and error texts (reference §2)."""

import pytest

from logpipe.errors import LogOptError, UnknownDriver
from logpipe.options import parse_bool, parse_int, validate_pipeline_opts
from logpipe.units import parse_duration, parse_human_size, parse_ram_size
from logpipe.registry import validate_log_config

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text,expected", [
    ("1k", 1000), ("1KiB", 1000), ("10m", 10_000_000), ("1g", 10**9), ("1.5k", 1500),
    ("20", 20), ("3 MB", 3_000_000),
])
def test_max_size_units_are_decimal_even_when_written_kib(text, expected):
    assert parse_human_size(text) == expected


def test_max_buffer_size_units_are_binary():
    assert parse_ram_size("1k") == 1024 and parse_ram_size("2m") == 2 * 1024 * 1024


@pytest.mark.parametrize("text", ["abc", "-1", "1x", "", "1.2.3k"])
def test_bad_sizes_are_rejected_with_dockers_message(text):
    with pytest.raises(LogOptError, match=f"^invalid size: '{text}'$"):
        parse_human_size(text)


def test_bool_and_int_errors_are_gos():
    assert parse_bool("True") is True and parse_bool("0") is False
    with pytest.raises(LogOptError, match='^strconv.ParseBool: parsing "maybe": invalid syntax$'):
        parse_bool("maybe")
    with pytest.raises(LogOptError, match='^strconv.Atoi: parsing "abc": invalid syntax$'):
        parse_int("abc")


def test_go_durations():
    assert parse_duration("1h30m") == 5400 * 10**9
    assert parse_duration("1.5s") == 1_500_000_000
    assert parse_duration("300ms") == 300_000_000
    # Go's time.ParseDuration texts, which Docker shows verbatim.
    for value, text in [("10", 'time: missing unit in duration "10"'),
                        ("1x", 'time: unknown unit "x" in duration "1x"'),
                        ("abc", 'time: invalid duration "abc"'),
                        (" 1s", 'time: invalid duration " 1s"')]:
        with pytest.raises(ValueError) as err:
            parse_duration(value)
        assert str(err.value) == text


@pytest.mark.parametrize("opts,message", [
    ({"mode": "fast"}, "logger: logging mode not supported: fast"),
    ({"max-buffer-size": "1m"},
     "logger: max-buffer-size option is only supported with 'mode=non-blocking'"),
    ({"mode": "non-blocking", "max-buffer-size": "abc"},
     "error parsing option max-buffer-size: invalid size: 'abc'"),
    ({"cache-disabled": "maybe"}, "invalid value for option cache-disabled: maybe"),
])
def test_pipeline_options_are_checked_first_with_dockers_texts(opts, message):
    with pytest.raises(LogOptError) as err:
        validate_pipeline_opts(opts)
    assert str(err.value) == message


def test_unknown_driver_is_looked_up_as_a_plugin_like_docker():
    with pytest.raises(UnknownDriver) as err:
        validate_log_config("bogus", {})
    assert str(err.value) == 'error looking up logging plugin bogus: plugin "bogus" not found'


def test_unknown_option_names_the_option_and_the_driver():
    with pytest.raises(LogOptError) as err:
        validate_log_config("json-file", {"foo": "bar"})
    assert str(err.value) == "unknown log opt 'foo' for json-file log driver"
