"""Shared fixtures: the reference material and benchmark sets in ../shared (skipped when absent, failed in CI)."""
import os
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('RAMIT_SHARED', REPO.parent / 'shared'))

# Single-threaded torch keeps the suite's timing stable on 2-core CI machines with subprocess tests in flight.
os.environ.setdefault('OMP_NUM_THREADS', '1')


def require_shared(*parts: str) -> Path:
    """Path under ../shared; skip with the reason when it is missing (a user's clone), fail when CI is set."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        reason = (f'{path} is missing: the reference folder (shared/ beside the clone, or the folder RAMIT_SHARED '
                  'names) holds the authors\' checkpoints, outputs and benchmark sets; docs/testing.md says how to '
                  'assemble it')
        if os.environ.get('CI'):
            pytest.fail(reason + ' (CI is set, so this is an error)')
        pytest.skip(reason)
    return path


@pytest.fixture(scope='session')
def spandrel():
    """The optional spandrel package (ramit-plugin[spandrel]) with RAMiT registered; skipped when it is not
    installed, failed when CI is set (CI installs the test extra, which includes it)."""
    try:
        import spandrel
    except ImportError:
        reason = "spandrel is not installed (pip install '.[spandrel]' or '.[test]' adds it)"
        if os.environ.get('CI'):
            pytest.fail(reason + ' (CI is set, so this is an error)')
        pytest.skip(reason)
    import ramit_spandrel  # noqa: F401  (what `import ramit_plugin` does when spandrel is installed)
    return spandrel


@pytest.fixture(scope='session')
def reference_dir() -> Path:
    """../shared/ramit_reference (weights/, golden/, keys/)."""
    return require_shared('ramit_reference')


@pytest.fixture(scope='session')
def golden_dir() -> Path:
    """../shared/ramit_reference/golden: the authors' code's outputs (made with their code, not downloadable)."""
    return require_shared('ramit_reference', 'golden')


@pytest.fixture(scope='session')
def keys_dir() -> Path:
    """../shared/ramit_reference/keys: key, shape and dtype of every tensor of each reference checkpoint."""
    return require_shared('ramit_reference', 'keys')


@pytest.fixture(scope='session')
def datasets_dir() -> Path:
    """../shared/datasets (Set5, Set14, Urban100, CBSD68, Kodak24, McMaster, BSD68, Set12)."""
    return require_shared('datasets')


@pytest.fixture(scope='session')
def onnx_cache_dir(tmp_path_factory) -> Path:
    """One RAMIT_CACHE for the whole run, shared by pytest-xdist's workers (their temporary folders have one parent):
    each published network is exported to ONNX once per run. cached_onnx writes atomically, so two workers exporting
    the same network at once only duplicate work."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base) / 'ramit_cache'
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def onnx_cache(onnx_cache_dir, monkeypatch) -> Path:
    """RAMIT_CACHE set to the run's cache (never the user's ~/.cache) for one test."""
    monkeypatch.setenv('RAMIT_CACHE', str(onnx_cache_dir))
    return onnx_cache_dir


@pytest.fixture(scope='session')
def inductor_cache(tmp_path_factory) -> Path:
    """One Inductor kernel cache for the suite's torch.compile tests: the tiny network compiles once (~1.5 min)."""
    return tmp_path_factory.mktemp('inductor')


@pytest.fixture
def one_process_launch(monkeypatch) -> None:
    """The environment torchrun gives a one-process run (rank 0 of 1, a free port for its store), so that a
    `--launcher pytorch` command runs in this process; the thread variables mmengine sets for such a run are undone
    afterwards."""
    import socket

    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    for var, value in dict(RANK=0, WORLD_SIZE=1, LOCAL_RANK=0, MASTER_ADDR='127.0.0.1', MASTER_PORT=port).items():
        monkeypatch.setenv(var, str(value))
    for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        monkeypatch.setenv(var, os.environ.get(var, '1'))


def require_cuda() -> None:
    """Skip unless a CUDA GPU is present (CUDA checks are run by tools/gpu_check.py on a GPU machine)."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip('needs a CUDA GPU')


@pytest.fixture
def cuda(monkeypatch):
    """A CUDA device with TF32 off (PyTorch's default TF32 convolutions move outputs by up to 1.6e-3)."""
    require_cuda()
    import torch

    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    return torch.device('cuda')


@pytest.fixture
def umask_022():
    """Run with the common umask 022 (restored afterwards)."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def lock_holder():
    """Factory: another process holding a lock on ``path`` as ramit.fileio.exclusive_lock takes it (lockf, its pid in
    the file), like a running experiment; with ``log`` it also keeps that file open for writing, with ``unlink`` it
    then deletes the lock file (as a clean-up of hidden files would). Killed afterwards; it imports nothing heavy."""
    import subprocess
    import sys

    holders = []

    def hold(path: Path, log: Optional[Path] = None, unlink: bool = False) -> 'subprocess.Popen':
        holder = subprocess.Popen([sys.executable, '-c', (
            'import fcntl, os, sys, time\n'
            'log = open(sys.argv[2], "w") if sys.argv[2] else None\n'
            'fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n'
            'fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n'
            'os.write(fd, f"{os.getpid()}\\n".encode())\n'
            'os.unlink(sys.argv[1]) if sys.argv[3] == "1" else None\n'
            'print("locked", flush=True); time.sleep(300)'), str(path), str(log or ''), '1' if unlink else '0'],
            stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        assert holder.stdout.readline() == 'locked\n'
        return holder

    yield hold
    for holder in holders:
        holder.kill()
        holder.wait()


@pytest.fixture
def compile_without_inductor(monkeypatch):
    """torch.compile with Inductor's code generation swapped for eager kernels (backend 'aot_eager'): Dynamo still
    traces the whole network and AOTAutograd splits forward and backward, in seconds instead of minutes on a CPU.
    Returns the list of the keyword arguments of every call. The real Inductor run (and its kernel cache) is
    tests/ramit_plugin/test_compile.py. Dynamo's caches are reset afterwards."""
    import torch

    calls = []
    compile_with_inductor = torch.compile

    def compile_eagerly(module, **kwargs):
        calls.append(kwargs)
        return compile_with_inductor(module, backend='aot_eager', **kwargs)

    monkeypatch.setattr(torch, 'compile', compile_eagerly)
    yield calls
    # Dynamo remembers the shapes it saw per code object: a later compile of RAMiT in this process at another shape
    # would retrace it with symbolic sizes (a minute and a half here) instead of starting afresh.
    torch._dynamo.reset()


# The files that took longest on a 2-core machine (--durations), longest first. pytest-xdist hands files to its
# workers in collection order here (--no-loadscope-reorder in pyproject.toml): its own order, most tests first,
# started the one-test compile file last and left the other core idle for its minute and more.
SLOWEST_FILES = (
    'ramit_plugin/test_compile.py', 'ramit_plugin/test_pipeline.py', 'ramit_cli/test_infer.py',
    'ramit/test_export.py', 'ramit_spandrel/test_spandrel.py', 'ramit_cli/test_bench.py',
    'ramit_plugin/mm/test_configs.py', 'ramit/test_half_precision.py', 'ramit_plugin/mm/test_exact_resume.py',
    'ramit/test_fast_path.py', 'ramit/test_checkpoint.py', 'tools/test_gpu_check.py',
)


def pytest_collection_modifyitems(items: list) -> None:
    """Run SLOWEST_FILES first, in that order; every other file after them in collection order."""
    def rank(item) -> int:
        path = Path(str(item.fspath)).relative_to(REPO / 'tests').as_posix()
        return SLOWEST_FILES.index(path) if path in SLOWEST_FILES else len(SLOWEST_FILES)

    items.sort(key=rank)  # stable: a file's tests keep their order


def ranks_failure(stderr: str) -> str:
    """What to show when a torchrun run fails: every rank's error lines (a rank's own message scrolls out of the
    tail when another rank logs its whole config after it), then the end of stderr."""
    marks = ('Error', 'error:', 'terminate called', 'what():', 'Abort', 'Fatal Python error')
    errors = [line for line in stderr.splitlines() if any(mark in line for mark in marks)]
    return '\n'.join(errors[-30:]) + '\n...\n' + stderr[-2000:]
