"""Test and lint sessions for portanet.

Usage::

    nox                                   # every session (GPU ones skip without a CUDA GPU)
    nox -l                                # list the sessions
    nox -s "tests(backend='torch')"       # one backend: numpy, array_api_strict, torch, jax, cupy
    nox -s lint                           # ruff and the import contracts (import-linter)
    nox -s package                        # build, check and install the sdist and wheel
    nox -s docs                           # the documentation site (mkdocs --strict, into site/)
    nox -s notebook                       # run examples/tutorial.ipynb on NumPy
    nox -j 2 --allow-parallel             # two sessions at a time
    nox -s "tests(backend='numpy')" -- -x -k dense   # arguments after -- go to pytest
    nox --no-venv --no-install            # use the packages already installed in this Python
                                          # (machines without a registry); backends whose
                                          # module does not import are skipped

Environment variables:

    PORTANET_TORCH_REQUIREMENT  torch to install (default torch==2.13.0+cpu, found in the local
                                wheels of PIP_FIND_LINKS / UV_FIND_LINKS); e.g. "torch" for CUDA.
    PORTANET_CUPY_REQUIREMENT   cupy to install (default cupy-cuda12x or cupy-cuda13x, after the
                                CUDA version that nvidia-smi reports).
    PORTANET_REQUIRE_GPU=1      fail, instead of skip, GPU sessions when no usable GPU is found.

The sessions install the ``mpi`` extra (mpi4py, Open MPI) and run the 2-rank MPI tests; with
--no-venv they run where mpirun and mpi4py are found and skip otherwise.
"""

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import nox
from nox.virtualenv import PassthroughEnv

nox.options.default_venv_backend = "uv|virtualenv"

ROOT = Path(__file__).resolve().parent
BACKENDS = ["numpy", "array_api_strict", "torch", "jax", "cupy"]
GPU_BACKENDS = {"cupy"}
EXTRAS = {"array_api_strict": "test,mpi,strict", "torch": "test,mpi,torch", "jax": "test,mpi,jax"}
LINT_PATHS = ["portanet", "tests", "examples", "benchmarks", "docs", "noxfile.py"]


def nvidia_smi(*args):
    """Output of nvidia-smi; raise RuntimeError when it is missing or fails."""
    if shutil.which("nvidia-smi") is None:
        raise RuntimeError("nvidia-smi not found")
    try:
        return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True,
                              timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        detail = (getattr(exc, "stderr", None) or str(exc)).strip()
        raise RuntimeError(f"nvidia-smi failed: {detail}") from exc


def cupy_requirement():
    """cupy wheel matching the driver's CUDA major version (or PORTANET_CUPY_REQUIREMENT)."""
    if os.environ.get("PORTANET_CUPY_REQUIREMENT"):
        return os.environ["PORTANET_CUPY_REQUIREMENT"]
    match = re.search(r"CUDA Version:\s*(\d+)", nvidia_smi())
    if match is None:
        raise RuntimeError("nvidia-smi reports no CUDA version")
    return "cupy-cuda13x" if int(match.group(1)) >= 13 else "cupy-cuda12x"


def imports(module):
    """Whether module imports in the Python running nox."""
    return subprocess.run([sys.executable, "-c", f"import {module}"],
                          capture_output=True).returncode == 0


def install_env():
    """uv does not read PIP_FIND_LINKS (space separated): pass it on as UV_FIND_LINKS."""
    pip_links = os.environ.get("PIP_FIND_LINKS", "").split()
    links = os.environ.get("UV_FIND_LINKS") or ",".join(pip_links)
    return {"UV_FIND_LINKS": links} if links else None


@nox.session(allow_parallel=True)
@nox.parametrize("backend", BACKENDS)
def tests(session, backend):
    """Run pytest with PORTANET_BACKEND=<backend>."""
    gpu = backend in GPU_BACKENDS
    require_gpu = gpu and os.environ.get("PORTANET_REQUIRE_GPU", "0") not in ("", "0")
    preinstalled = isinstance(session.virtualenv, PassthroughEnv) or session.venv_backend == "none"

    def unavailable(reason):
        (session.error if require_gpu else session.skip)(f"{backend}: {reason}")

    extra_requirements = []
    if gpu:  # decided before installing anything
        try:
            if "GPU" not in nvidia_smi("-L"):
                unavailable("nvidia-smi reports no GPU")
            if not preinstalled:
                extra_requirements.append(cupy_requirement())
        except RuntimeError as exc:
            unavailable(f"no usable CUDA GPU ({exc})")
    if backend == "torch":
        extra_requirements.append(
            os.environ.get("PORTANET_TORCH_REQUIREMENT") or "torch==2.13.0+cpu")

    if preinstalled:
        if not imports(backend):
            unavailable(f"module {backend!r} does not import in {sys.executable}")
        pythonpath = [str(ROOT), os.environ.get("PYTHONPATH", "")]
        session.env["PYTHONPATH"] = os.pathsep.join(filter(None, pythonpath))
        python = sys.executable
    else:
        session.install("-e", f".[{EXTRAS.get(backend, 'test,mpi')}]", *extra_requirements,
                        env=install_env())
        session.env["PORTANET_REQUIRE_MPI"] = "1"  # installed here: the MPI tests must run
        python = "python"

    session.env["PORTANET_BACKEND"] = backend
    # Every test process (pytest, the CLI, the XOR example, each MPI rank) imports the array
    # library: keep the bytecode Python compiles, in this session's folder, even where
    # PYTHONDONTWRITEBYTECODE is set (uv installs no .pyc files), rather than compiling jax or
    # torch from source again in each process (~3 s each).
    session.env.update(PYTHONDONTWRITEBYTECODE="",
                       PYTHONPYCACHEPREFIX=str(Path(session.create_tmp()).resolve() / "pycache"))
    session.run(python, "-m", "pytest", *(session.posargs or ["-q"]))
    if backend == "array_api_strict" and not session.posargs:
        # Again on a fake second device: arrays must never meet default-device ones, the CPU
        # stand-in for GPU placement bugs.
        session.run(python, "-m", "pytest", "-q", env={"PORTANET_DEVICE": "device1"})


@nox.session(allow_parallel=True)
def lint(session):
    """ruff check over the sources, tests, examples and this file; the import contracts of
    pyproject.toml (import-linter: rooms import only the rooms below them, array libraries
    only in the backend and the host-side edges)."""
    if not isinstance(session.virtualenv, PassthroughEnv):
        session.install("ruff", "import-linter")
    session.run("ruff", "check", *[path for path in LINT_PATHS if (ROOT / path).exists()])
    session.run("lint-imports")


@nox.session(allow_parallel=True)
def package(session):
    """Build, check and install the sdist and wheel; run portanet from outside the sources.

    twine checks both and each must hold LICENSE; the wheel goes into this session's fresh
    environment (not editable) and the command runs in a temporary folder elsewhere."""
    if isinstance(session.virtualenv, PassthroughEnv) or session.venv_backend == "none":
        session.skip("package installs the wheel: it needs its own virtual environment")
    session.install("build[uv]", "twine", env=install_env())
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--installer", "uv", "--outdir", str(dist), str(ROOT))
    built = sorted(dist.iterdir())
    session.run("twine", "check", "--strict", *map(str, built))
    for path in built:
        with (zipfile.ZipFile(path) if path.suffix == ".whl" else tarfile.open(path)) as archive:
            names = archive.namelist() if path.suffix == ".whl" else archive.getnames()
        if not any(name.endswith("/LICENSE") for name in names):
            session.error(f"{path.name} has no LICENSE")
    session.install(*[str(path) for path in built if path.suffix == ".whl"], env=install_env())
    env = {"PYTHONPATH": ""}
    with tempfile.TemporaryDirectory() as outside, session.chdir(outside):  # away from sources
        where = session.run("python", "-c", "import portanet; print(portanet.__file__)",
                            silent=True, env=env).strip().splitlines()[-1]
        if not Path(where).is_relative_to(session.virtualenv.location):
            session.error(f"portanet was imported from {where}, not from the installed wheel")
        session.run("portanet", "info", env=env)
        session.run("portanet", "train", "--epochs", "1", "--limit", "300", "--quiet",
                    "--save", "net.npz", env=env)
        session.run("portanet", "evaluate", "--model", "net.npz", env=env)


def preinstalled_python(session, *modules):
    """In a --no-venv run, the Python running nox (skipping the session unless ``modules``
    import there); None when the session has its own virtualenv to install into."""
    if not isinstance(session.virtualenv, PassthroughEnv):
        return None
    for module in modules:
        if not imports(module):
            session.skip(f"module {module!r} does not import in {sys.executable}")
    session.env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return sys.executable


@nox.session(allow_parallel=True)
def docs(session):
    """Build the documentation site with ``mkdocs build --strict`` (warnings fail) into site/."""
    python = preinstalled_python(session, "mkdocs", "material", "mkdocstrings_handlers.python")
    if python is None:
        session.install("-e", ".", "mkdocs", "mkdocs-material", "mkdocstrings[python]",
                        env=install_env())
        python = "python"
    session.run(python, "-m", "mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session(allow_parallel=True)
def notebook(session):
    """Execute examples/tutorial.ipynb top to bottom on NumPy (pytest --nbmake)."""
    python = preinstalled_python(session, "nbmake")
    if python is None:
        session.install("-e", ".", "nbmake", env=install_env())
        python = "python"
    session.run(python, "-m", "pytest", "--nbmake", "--nbmake-timeout=300", "-q",
                "-p", "no:cacheprovider", "examples/tutorial.ipynb",
                env={"PORTANET_BACKEND": "numpy", "PORTANET_DEVICE": "",
                     # one BLAS thread: nox runs two sessions at a time on two cores in CI
                     "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
