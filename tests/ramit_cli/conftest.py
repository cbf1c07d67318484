"""Fixtures of the command-line tests: commands run in this process, small images, tiny checkpoints, and one ONNX
cache for the session (an export costs seconds; every run of the same weights afterwards reuses it)."""
from pathlib import Path
from typing import Callable

import numpy as np
import pytest


def smooth_image(h: int, w: int, c: int, seed: int, dtype=np.uint8) -> np.ndarray:
    """A smooth random [h, w, c] image (upscaled noise) of ``dtype`` (uint8 or uint16), BGR(A) as OpenCV writes."""
    import cv2

    top = 255 if dtype == np.uint8 else 65535
    small = np.random.default_rng(seed).uniform(0, top, (4, 4, c)).astype(np.float32)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(img, 0, top).astype(dtype).reshape(h, w, c)


def write_image(path: Path, h: int, w: int, c: int = 3, seed: int = 0, dtype=np.uint8) -> Path:
    """Write ``smooth_image(h, w, c, seed, dtype)`` to ``path`` (any OpenCV format); returns the path."""
    import cv2

    img = smooth_image(h, w, c, seed, dtype)
    assert cv2.imwrite(str(path), img[:, :, 0] if c == 1 else img)
    return path


def run_ramit(*argv: str) -> int:
    """`ramit ARGV` in this process; returns the exit status."""
    from ramit_cli.main import main

    return main(list(argv), prog='ramit')


@pytest.fixture(scope='session')
def smooth() -> Callable[..., np.ndarray]:
    """Factory: a smooth random image (see smooth_image)."""
    return smooth_image


@pytest.fixture(scope='session')
def image_file() -> Callable[..., Path]:
    """Factory: write a smooth random image file (see write_image)."""
    return write_image


@pytest.fixture(scope='session')
def ramit() -> Callable[..., int]:
    """Factory: run `ramit ARGV` in this process (see run_ramit)."""
    return run_ramit


@pytest.fixture
def slim_x2(reference_dir) -> Path:
    """The published RAMiT-slimSR x2 checkpoint in ../shared."""
    return reference_dir / 'weights' / 'RAMiT-slimSR_X2.pth'


def tiny_checkpoint(path: Path, task: str = 'sr', **hparams) -> Path:
    """A tiny RAMiT checkpoint with random weights, always the same (for tests about files, not quality)."""
    import torch

    from ramit import RAMiT

    torch.manual_seed(0)
    net = RAMiT('RAMiT', task, dim=16, depths=(1, 1, 1, 1), window_size=4, fuse_expand_groups=1, **hparams)
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture
def tiny_weights(tmp_path) -> Path:
    """A tiny x2 RAMiT checkpoint."""
    return tiny_checkpoint(tmp_path / 'tiny.pth', upscale=2)


# ---------------------------------------------------------------- BasicSR runs (convert's safetensors, CUDA checks)
@pytest.fixture(scope='session')
def plugin_helpers():
    """tests/ramit_plugin/conftest.py loaded as a module: the BasicSR data sets, option dicts and runners that the
    BasicSR-side tests here share with the ramit_plugin tests (reused, not copied; its fixtures are not registered
    by this)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / 'ramit_plugin' / 'conftest.py'
    spec = importlib.util.spec_from_file_location('ramit_cli_tests_plugin_helpers', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def sr_data(plugin_helpers, tmp_path_factory) -> dict:
    """A tiny x2 SR dataset (folders and LMDBs; see write_pairs there), read-only for the tests."""
    return plugin_helpers.write_pairs(tmp_path_factory.mktemp('sr_data'))


@pytest.fixture(scope='session')
def tiny_options(plugin_helpers) -> Callable[..., dict]:
    """Factory: option dict of a tiny RAMiTModel run (train_options there)."""
    return plugin_helpers.train_options


@pytest.fixture(scope='session')
def options_file(plugin_helpers) -> Callable[..., Path]:
    """Factory: write an option dict as YAML (write_yaml there)."""
    return plugin_helpers.write_yaml


@pytest.fixture(scope='session')
def run_basicsr(plugin_helpers) -> Callable:
    """Factory: run the `basicsr` console script in a folder (basicsr_cmd there)."""
    return plugin_helpers.basicsr_cmd


@pytest.fixture(scope='session')
def set5_options(plugin_helpers) -> Callable[..., dict]:
    """Factory: `basicsr test` option dict of a published SR checkpoint on Set5 (set5_test_options there)."""
    return plugin_helpers.set5_test_options
