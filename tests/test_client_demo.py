"""`gradserve demo` and the examples: the seed through the client prints what torch prints."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import subprocess
import sys
from pathlib import Path

from gradserve.client.demo import walkthrough
from gradserve.server.cli import main as cli_main
from tests.conftest import gradserve_seed_lines
from tests.reference import torch

ROOT = Path(__file__).resolve().parent.parent


def torch_lines() -> list[str]:
    return gradserve_seed_lines(torch)


def test_demo_walkthrough_prints_through_say_what_print_prints():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        walkthrough(torch)
    lines = [ln for ln in out.getvalue().splitlines() if not ln.startswith("#")]
    assert lines == torch_lines()


def test_gradserve_demo_runs_the_seed_through_an_in_process_server(capsys):
    assert cli_main(["demo"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("#")]
    assert lines == torch_lines()


def test_stateless_example(gradserve_server):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "stateless_graph.py"),
                             f"localhost:{gradserve_server[1]}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("y = ") and "dy/dw" in result.stdout


def test_train_neuron_example_prints_what_torch_prints(gradserve_server):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "train_neuron.py"),
                             f"localhost:{gradserve_server[1]}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    *lines, trips = result.stdout.splitlines()
    spec = importlib.util.spec_from_file_location("train_neuron", ROOT / "examples" /
                                                  "train_neuron.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        example.train(torch)
    assert lines == out.getvalue().splitlines()
    # zero_grad, forward and step are recorded; backward sends them, loss.item() reads at once
    assert trips.endswith(" round trips") and int(trips.split()[0]) <= 2 * 50 + 10
