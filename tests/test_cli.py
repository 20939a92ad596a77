"""The command line of examples/train_pinn.py and the README's example, as a newcomer meets them."""

import io
import os
import re
import subprocess
import sys

import jax
import pytest
import train_pinn as tp  # examples/ is on the path (pyproject.toml: pythonpath)

import stde.pinn.equations as pe

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
EXAMPLES = os.path.join(ROOT, "examples")

BAD_FLAGS = [
    (["--dim", "0"], "--dim"),
    (["--dim", "-3"], "--dim"),
    (["--dim", "two"], "--dim"),
    (["--n-samples", "0"], "--n-samples"),
    (["--steps", "0"], "--steps"),
    (["--steps", "-5"], "--steps"),
    (["--eval-every", "0"], "--eval-every"),
    (["--batch", "0"], "--batch"),
    (["--batch", "-64"], "--batch"),
    (["--width", "0"], "--width"),
    (["--depth", "0"], "--depth"),
    (["--n-test", "0"], "--n-test"),
    (["--seed", "-1"], "--seed"),
    (["--learning-rate", "0"], "--learning-rate"),
    (["--learning-rate", "nan"], "--learning-rate"),
    (["--equation", "kdv", "--dim", "2"], "kdv"),
    (["--equation", "sine_gordon_3body", "--dim", "2"], "--dim 2"),
    (["--method", "sdgd", "--dim", "4"], "--n-samples"),
    (["--equation", "nope"], "--equation"),
]


def _error_line(capsys, argv):
    """Runs ``parse_args(argv)``, asserts exit code 2, returns argparse's one error line."""
    with pytest.raises(SystemExit) as exit_info:
        tp.parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("usage:")
    errors = [line for line in lines if " error: " in line]
    assert errors == [lines[-1]], err  # exactly one error line, the last one
    return lines[-1]


@pytest.mark.parametrize("argv, names", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_is_an_argparse_error(argv, names, capsys):
    assert names in _error_line(capsys, argv)


def test_more_devices_than_available_is_an_argparse_error(capsys):
    line = _error_line(capsys, ["--devices", str(len(jax.devices()) + 1)])
    assert "xla_force_host_platform_device_count" in line


def test_bad_flag_exits_with_code_2_from_the_command_line():
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, "train_pinn.py"),
                             "--eval-every", "0"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(
        "argument --eval-every: must be a positive integer, got 0")


def test_help_shows_defaults_and_the_devices_caveat(capsys):
    with pytest.raises(SystemExit):
        tp.parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("(default: heat)", "(default: 2000)", "(default: 16)", "(default: 64)",
                 "1 for kdv", "share the same cores"):
        assert text in out, text


def test_dimension_defaults_per_equation():
    assert tp.parse_args(["--equation", "kdv"]).dim == 1
    assert tp.parse_args([]).dim == pe.default_dim("heat") == 100
    assert tp.parse_args(["--dim", "7"]).dim == 7
    for name in pe.EQUATIONS:  # every equation builds at its default dimension
        pe.make_equation(name, pe.default_dim(name))


def test_run_folders_differ_when_settings_differ():
    base = tp.parse_args([])
    assert base.out == os.path.join("runs", "heat-d100-sparse-S16-steps2000-dev1-seed0")
    variants = [["--steps", "10"], ["--n-samples", "4"], ["--seed", "1"], ["--batch", "32"],
                ["--width", "32"], ["--method", "exact"], ["--learning-rate", "0.01"],
                ["--equation", "kdv"]]
    folders = {base.out} | {tp.parse_args(v).out for v in variants}
    assert len(folders) == len(variants) + 1, folders
    assert tp.parse_args(["--out", ""]).out == ""


def test_progress_prints_plain_lines_when_not_a_terminal():
    stream = io.StringIO()  # not a terminal
    progress = tp.Progress(300, stream=stream)
    assert not progress.live
    progress.update(50)  # no new loss: nothing to print
    progress.update(101, loss=1.5e-2, error=3e-1)
    progress.update(300, loss=1.0e-2, error=2e-1)
    progress.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 2 and lines[0].startswith("step 101/300  loss 1.500e-02"), lines
    assert "it/s" in lines[0] and "ETA" in lines[0]
    quiet = io.StringIO()
    tp.Progress(300, enabled=False, stream=quiet).update(101, loss=1.0, error=1.0)
    assert quiet.getvalue() == ""


def test_one_step_reports_no_rate_and_quiet_prints_nothing(tmp_path, capsys):
    config = tp.Config(equation="poisson", dim=3, steps=1, batch=8, width=8, depth=1,
                       n_samples=2, n_test=64, out=str(tmp_path), quiet=True)
    summary = tp.train(config)
    assert summary["iterations_per_second"] is None
    assert capsys.readouterr().out == ""


def test_plot_title_names_the_run_and_legend_leaves_the_axes_free():
    summary = {"equation": "heat", "dim": 100, "method": "sparse", "n_samples": 16,
               "steps": 2000, "batch": 64, "loss_steps": [0, 1000, 1999],
               "loss_curve": [1.0, 1e-2, 1e-3], "error_curve": [(0, 0.9), (1000, 0.1),
                                                                 (1999, 0.01)],
               "trivial_predictor_error": 0.64}
    fig = tp.plot_curves(summary)
    try:
        title = fig._suptitle.get_text()
        assert "S=16" in title and "2000 steps" in title
        ax = fig.axes[1]
        fig.canvas.draw()
        legend = ax.get_legend().get_window_extent()
        assert legend.y1 < ax.get_window_extent().y0  # below the axes: covers no line
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_readme_example_prints_what_the_readme_shows(capsys):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        section = f.read().split("## Example", 1)[1].split("\n## ", 1)[0]
    code, shown = re.findall(r"```(?:python|text)\n(.*?)```", section, re.S)
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out == shown
