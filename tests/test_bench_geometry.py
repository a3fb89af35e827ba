"""The geometry suite's interleaved timing (``bench_rasterize.py --suite geometry
--interleave``): its rounds and its argument checks. Figures are not asserted (speed is
measured in ``bench/``, never in tests)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import bench_rasterize, geometry

FACE = np.array([[[-0.3, -0.2, 0.5], [0.3, -0.25, 0.5], [0.0, 0.35, 0.5]]], np.float32)


def _scene(name: str, copies: int) -> geometry.Scene:
    fv = np.repeat(FACE[None], copies, axis=1)
    return geometry.Scene(name, fv, np.ones(fv.shape[:2] + (1, 3), np.float32), 16, 1e-4)


def test_interleaved_rounds_time_every_scene():
    scenes = [_scene("one", 1), _scene("three", 3)]
    logged = []
    out = geometry.time_interleaved(scenes, rounds=3, calls_per_round=1, log=logged.append)
    assert len(out) == 2
    for row in out:
        assert set(row) == {"fwd_ms", "fwd_bwd_ms", "rounds_fwd_bwd_ms"}
        assert len(row["rounds_fwd_bwd_ms"]) == 3
        assert all(t > 0 for t in row["rounds_fwd_bwd_ms"])
        assert row["fwd_bwd_ms"] == pytest.approx(np.median(row["rounds_fwd_bwd_ms"]))
        assert row["fwd_ms"] > 0
    assert logged[:2] == ["  compiling 1/2: one", "  compiling 2/2: three"]
    assert logged[-1] == "  round 3/3 done"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--interleave", "2", "--baseline", "."], "leave out --baseline"),
        (["--interleave", "-1"], "number of rounds"),
    ],
)
def test_interleave_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        bench_rasterize.main(["--suite", "geometry", *argv])
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_scenes_that_name_nothing_fail_clearly(tmp_path):
    argv = ["--suite", "geometry", "--interleave", "1", "--scenes", "no such scene"]
    with pytest.raises(SystemExit, match="names none of the suite's scenes"):
        bench_rasterize.main([*argv, "--json", str(tmp_path / "out.json")])
