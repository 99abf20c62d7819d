"""What must never leak or escape: the token, the Authorization header, files outside the output folder."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from batchrun.api import RunComfyClient
from batchrun.errors import ConfigError

TOKEN = "rc-SECRET-7f3c9a1e5b"
I2V = "kling/kling-3.0/standard/image-to-video"


def batchrun(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchrun", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_token_never_reaches_any_artifact(isolated_env, make_simulator):
    """After a campaign with faults and failures, the token is in no log, database, sidecar or output."""
    from batchrun.sim import Faults

    simulator = make_simulator(token=TOKEN, failure_rate=0.3, seed=5,
                               faults=Faults(server_error=0.2, error_200=0.1, retry_after=0))
    manifest = isolated_env / "secret.yaml"
    manifest.write_text(f"model: {I2V}\noutput: {{dir: out}}\ndefaults:\n  duration: 3\n"
                        "  start_image_url: https://example.com/a.png\njobs:\n"
                        + "".join(f"  - prompt: scene {i}\n" for i in range(6)))
    env = {"RUNCOMFY_API_TOKEN": TOKEN}
    runs = [batchrun("run", str(manifest), "--base-url", simulator.base_url, env=env),
            batchrun("run", str(manifest), "--base-url", simulator.base_url, "--json", env=env),
            batchrun("plan", str(manifest), "--json", env=env)]
    assert runs[0].returncode in (0, 1), runs[0].stderr
    for run in runs:
        assert TOKEN not in run.stdout + run.stderr
    files = [p for p in isolated_env.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files) and any(p.name.endswith(".mp4.json") for p in files)
    for path in files:
        assert TOKEN.encode() not in path.read_bytes(), path
    assert simulator.stats().authorization_headers_on_files == 0


def test_database_and_output_folder_are_user_only(isolated_env):
    """The database file is created 0600 and the output folder 0700."""
    manifest = isolated_env / "m.yaml"
    manifest.write_text(f"model: {I2V}\noutput: {{dir: out}}\njobs:\n  - prompt: a\n    start_image_url: https://e.com/a.png\n"
                        "    duration: 3\n")
    result = batchrun("run", str(manifest), "--simulate", "--sim-latency", "0.05", env={})
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((isolated_env / "m.batchrun.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((isolated_env / "out").stat().st_mode) == 0o700


@pytest.mark.parametrize("token", ["tok-abc\u200b", "tok abc", "tok\nabc", "tok-ü"])
def test_a_token_no_header_can_carry_is_one_line_that_does_not_show_it(token):
    """A copy-paste that brought an invisible character or a line break: a clear ConfigError
    naming the position, never a traceback and never the token."""
    with pytest.raises(ConfigError) as caught:
        RunComfyClient("https://api.test", token)
    assert "position" in caught.value.message and token.strip() not in caught.value.message


@pytest.mark.parametrize("filename", ["../escape.mp4", "/etc/passwd", "a/../../b.mp4", "CON.mp4", "x\x00y.mp4",
                                      "sub\\evil.mp4", "a" * 300 + ".mp4"])
def test_output_names_cannot_escape_the_output_folder(isolated_env, filename):
    """A filename template that would leave the output folder (or break on Windows) is a manifest error."""
    manifest = isolated_env / "m.yaml"
    quoted = filename.replace("\\", "\\\\").replace("\x00", "\\0").replace('"', '\\"')
    manifest.write_text(f'model: {I2V}\noutput: {{filename: "{quoted}"}}\njobs:\n  - prompt: a\n'
                        "    start_image_url: https://e.com/a.png\n")
    result = batchrun("validate", str(manifest), env={})
    assert result.returncode == 2, (filename, result.stdout)
    assert "Traceback" not in result.stderr and "m.yaml:" in result.stderr


def test_ids_and_variables_cannot_smuggle_paths(isolated_env):
    """Matrix values and ids used in file names are confined to the output folder."""
    manifest = isolated_env / "m.yaml"
    manifest.write_text(f'model: {I2V}\noutput: {{filename: "{{where}}/{{id}}.mp4"}}\n'
                        'matrix:\n  where: ["../../tmp", "ok"]\n'
                        "defaults:\n  prompt: a {where}\n  start_image_url: https://e.com/a.png\n")
    result = batchrun("validate", str(manifest), env={})
    if result.returncode == 0:  # sanitised rather than refused: then nothing may point outside
        plan = batchrun("plan", str(manifest), "--json", "--show", "10", env={})
        import json

        for job in json.loads(plan.stdout)["sample"]:
            resolved = (isolated_env / "out" / job["output"]).resolve()
            assert (isolated_env / "out").resolve() in resolved.parents
    else:
        assert result.returncode == 2 and "Traceback" not in result.stderr
