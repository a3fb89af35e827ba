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


def test_interleaved_rounds_time_every_scene(monkeypatch):
    calls = []

    def timed_calls(scene, backend):  # compiling real scenes is time_scene's (and slow)
        assert backend == "xla"
        return {k: (lambda k=k: calls.append((scene.name, k))) for k in ("fwd", "fwd_bwd")}

    monkeypatch.setattr(geometry, "_timed_calls", timed_calls)
    scenes = [_scene("one", 1), _scene("three", 3)]
    logged = []
    out = geometry.time_interleaved(scenes, rounds=3, calls_per_round=2, log=logged.append)
    # round by round, every scene in each round, each call calls_per_round times
    one_round = [(n, k) for n in ("one", "three") for k in ("fwd", "fwd", "fwd_bwd", "fwd_bwd")]
    assert calls == one_round * 3
    assert len(out) == 2
    for row in out:
        assert set(row) == {"fwd_ms", "fwd_bwd_ms", "rounds_fwd_bwd_ms"}
        assert len(row["rounds_fwd_bwd_ms"]) == 3
        assert all(t >= 0 for t in row["rounds_fwd_bwd_ms"])
        assert row["fwd_bwd_ms"] == pytest.approx(np.median(row["rounds_fwd_bwd_ms"]))
    assert logged[:2] == ["  compiling 1/2: one", "  compiling 2/2: three"]
    assert logged[2:] == [f"  round {r}/3 done" for r in (1, 2, 3)]


def test_time_scene_runs_both_calls():
    out = geometry.time_scene(_scene("one", 2), repeats=2)
    assert set(out) == {"fwd_ms", "fwd_bwd_ms"}
    assert out["fwd_ms"] > 0 and out["fwd_bwd_ms"] > 0


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
