"""The pytest plugin without an agent: a marked test warns once and runs
unreserved, or fails under --sentinel-required; a marker without a size
is a usage error."""

pytest_plugins = ["pytester"]

# The plugin by its module, and not also by its entry point (present when
# the package is installed, or built in place).
PLUGIN = ("-p", "no:sentinel", "-p", "sentinel_client.pytest_plugin")

SUITE = """
import pytest

@pytest.mark.sentinel_reserve("1GiB")
def test_one():
    pass

@pytest.mark.sentinel_reserve("1GiB")
def test_two():
    pass
"""


def test_without_an_agent_marked_tests_warn_once_and_run(pytester):
    pytester.makepyfile(SUITE)
    r = pytester.runpytest(*PLUGIN, "--sentinel-socket", "/nonexistent.sock")
    r.assert_outcomes(passed=2, warnings=1)
    r.stdout.fnmatch_lines(["*no Sentinel agent: tests marked sentinel_reserve run unreserved*"])


def test_required_makes_a_missing_agent_a_failure(pytester):
    pytester.makepyfile(SUITE)
    r = pytester.runpytest(
        *PLUGIN, "--sentinel-socket", "/nonexistent.sock", "--sentinel-required"
    )
    r.assert_outcomes(errors=2)
    r.stdout.fnmatch_lines(["*--sentinel-required*"])


def test_a_marker_needs_a_size(pytester):
    pytester.makepyfile(
        """
import pytest

@pytest.mark.sentinel_reserve()
def test_x():
    pass
"""
    )
    r = pytester.runpytest(*PLUGIN)
    r.stdout.fnmatch_lines(["*sentinel_reserve needs a size*"])
