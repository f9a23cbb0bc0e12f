"The command line as a whole: its version, `python -m tinyscale`, the installed script, and output into a closed pipe."
import subprocess, sys
from pathlib import Path

import pytest

from support import tinyscale_command
from tinyscale import __version__


def test_version_in_process_and_as_a_module(cli, cli_process):
    with pytest.raises(SystemExit) as exit:
        cli("--version")
    assert exit.value.code == 0
    shown = cli_process("--version")
    assert (shown.status, shown.out.strip()) == (0, f"tinyscale {__version__}")


def test_the_installed_script_is_the_command_line(offline_env, tmp_path):
    "The `tinyscale` console script (the other tests run `python -m tinyscale`) starts the same command line."
    script = Path(sys.executable).parent/"tinyscale"
    shown = subprocess.run([str(script), "--version"], env=offline_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (shown.returncode, shown.stdout.strip()) == (0, f"tinyscale {__version__}"), shown.stderr


def test_output_into_a_closed_pipe_ends_quietly(workbook, offline_env):
    "`tinyscale prompts check | head -0`: the reader is gone; no BrokenPipeError traceback, the closed pipe's status."
    writer = subprocess.Popen(tinyscale_command("prompts", "check"), cwd=workbook,
                              env=dict(offline_env, TINYSCALE_ROOT=str(workbook)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer.stdout.close()  # the reader goes away before anything is written
    status, err = writer.wait(timeout=120), writer.stderr.read().decode()
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert status == 141, (status, err)
