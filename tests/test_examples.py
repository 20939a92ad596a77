"""The narrated tutorials in examples/ run at tiny size (``--tiny``)."""

import os
import runpy
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "examples")
TUTORIALS = ["tutorial_1_taylor_mode.py", "tutorial_2_collapsing_laplacian.py",
             "tutorial_3_stde_operators.py", "tutorial_4_pinn.py", "tutorial_5_vmc.py"]


@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_runs_tiny(name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [name, "--tiny"])
    runpy.run_path(os.path.join(EXAMPLES, name), run_name="__main__")
    out = capsys.readouterr().out
    assert "== 1." in out and "nan" not in out.lower()


def test_train_pinn_help_lists_the_flags(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train_pinn.py", "--help"])
    with pytest.raises(SystemExit):
        runpy.run_path(os.path.join(EXAMPLES, "train_pinn.py"), run_name="__main__")
    out = capsys.readouterr().out
    for flag in ("--equation", "--dim", "--method", "--n-samples", "--steps", "--batch",
                 "--seed", "--devices", "--out"):
        assert flag in out
