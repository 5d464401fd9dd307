"""The seeds demo runs and checks its own numbers (the digits demo needs the demo extra and
runs as `make demo`)."""

import graphc.demo.seeds


def test_seeds_demo(capsys):
    graphc.demo.seeds.main()
    out = capsys.readouterr().out
    assert "BAD" not in out
    assert "L-BFGS" in out and "350000" in out
    assert out.rstrip().endswith("all examples match the seeds' derivations")
