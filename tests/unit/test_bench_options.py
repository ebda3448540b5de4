"""tools/bench.py's options, in-process: --quick scales every scenario down, and options given
still win.  The benchmark itself, as a process: tests/bench/test_bench.py."""

from __future__ import annotations

from tools import bench


def sizes(args) -> dict[str, float]:
    """The numeric options of a parsed command line (a list of sizes counts as its sum)."""
    numbers = {}
    for key, value in vars(args).items():
        if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            value = sum(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers[key] = value
    return numbers


def test_quick_scales_every_scenario_down_and_options_given_still_win():
    for name in bench.SCENARIOS:
        full, quick = sizes(bench.options([name])), sizes(bench.options(["--quick", name]))
        assert quick.keys() == full.keys() and full, name
        assert all(quick[key] <= full[key] for key in full), (name, quick, full)
        assert any(quick[key] < full[key] for key in full), f"{name} is not scaled down by --quick"
        assert bench.options([name, "--quick"]) == bench.options(["--quick", name])
        assert sizes(bench.defaults(name, quick=True)) == quick  # as each scenario of `all --quick` runs
    chosen = bench.options(["--json", "--quick", "scale", "--clients", "5"])
    assert chosen.clients == [5] and chosen.json and chosen.timeout < bench.options(["scale"]).timeout
