"""`ramit demo`: the dataset it builds from scikit-image's photos, and a short end-to-end run through basicsr train.

The full default demo (1000 iterations, RAMiT beating bicubic) takes minutes and is measured by hand (README).
"""
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import yaml

from ramit_cli.main import main
from ramit_plugin.cli import demo
from ramit_plugin.cli.data_prep import DataPrepError
from ramit_plugin.protocol import protocol_forward

ITERS = 20


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    """`ramit demo --iters 20` run once in a fresh folder: (workdir, completed process)."""
    cwd = tmp_path_factory.mktemp('demo')
    proc = subprocess.run([sys.executable, '-m', 'ramit_cli', 'demo', '--workdir', 'wd',
                           '--iters', str(ITERS)], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return cwd / 'wd', proc


def meta_sizes(lmdb_dir: Path) -> dict:
    """key -> (h, w) from an LMDB's meta_info.txt."""
    sizes = {}
    for line in (lmdb_dir / 'meta_info.txt').read_text().splitlines():
        name, shape, _ = line.split(' ')
        h, w, _ = map(int, shape.strip('()').split(','))
        sizes[name[:-4]] = (h, w)
    return sizes


def test_demo_dataset_is_a_paired_x2_lmdb_set_with_held_out_photos(demo_run):
    workdir, _ = demo_run
    data = workdir / 'data'
    gt, lq = meta_sizes(data / 'train_HR_sub.lmdb'), meta_sizes(data / 'train_LR_bicubic_X2_sub.lmdb')
    assert set(gt) == set(lq) and len(gt) > 100
    assert all(gt[key] == (2 * lq[key][0], 2 * lq[key][1]) == (160, 160) for key in gt)
    train_photos = {key.rsplit('_s', 1)[0] for key in gt}
    assert train_photos == set(demo.TRAIN_PHOTOS)
    # Validation photos are whole, mod-cropped to even sizes, and never seen in training.
    val = sorted(p.stem for p in (data / 'val_HR').iterdir())
    assert val == sorted(demo.VAL_PHOTOS) and not train_photos & set(val)
    import cv2
    for name in val:
        hr = cv2.imread(str(data / 'val_HR' / f'{name}.png'))
        lr = cv2.imread(str(data / 'val_LR_bicubic_X2' / f'{name}x2.png'))
        assert hr.shape == (2 * lr.shape[0], 2 * lr.shape[1], 3)
    assert not [p.name for p in workdir.iterdir() if p.name.startswith('.')]


def test_demo_trains_through_basicsr_and_prints_psnr_against_bicubic(demo_run):
    workdir, proc = demo_run
    opt = yaml.safe_load((workdir / demo.OPTION_FILE).read_text())
    assert opt['train']['total_iter'] == ITERS and opt['train']['scheduler']['periods'] == [ITERS]
    experiment = workdir / 'experiments' / opt['name']
    assert (experiment / 'models' / 'net_g_latest.pth').is_file()
    assert (experiment / 'training_states' / f'{ITERS}.state').is_file()
    out = proc.stdout
    assert f'PSNR-Y (dB, border 2) on held-out photos, x2, after {ITERS} iterations:' in out
    rows = dict(re.findall(r'^  (\w+) +(\d+\.\d\d +\d+\.\d\d)$', out, re.M))
    assert set(rows) == set(demo.VAL_PHOTOS) | {'mean'}
    bicubic, ramit = map(float, rows['mean'].split())
    assert re.search(r'^RAMiT (beats|does not beat) bicubic by [+-]\d+\.\d\d dB', out, re.M)
    # The table's RAMiT column is what BasicSR's own validation (RAMiTModel, calculate_psnr) reported last.
    logged = re.findall(r'# psnr: (\d+\.\d+)', proc.stdout + proc.stderr)
    assert logged and abs(float(logged[-1]) - ramit) < 0.006
    assert 20 < bicubic < 40


def test_demo_refuses_bad_iters_before_writing_anything(tmp_path, capsys):
    assert main(['demo', '--workdir', str(tmp_path / 'wd'), '--iters', '0'], prog='ramit') == 2
    assert capsys.readouterr().err.strip() == 'ramit demo: error: --iters 0: must be at least 1'
    assert not (tmp_path / 'wd').exists()


def test_demo_dataset_build_is_all_or_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, 'TRAIN_PHOTOS', ('astronaut', 'no_such_photo'))
    with pytest.raises(DataPrepError, match='too few scikit-image photos'):
        demo.build_dataset(tmp_path / 'data')
    assert list(tmp_path.iterdir()) == []


def test_the_trained_demo_checkpoint_runs_through_ramit_infer(demo_run, tmp_path):
    """The network `ramit demo` trains (dim 16, one block per stage) is no published size: infer rebuilds it."""
    workdir, _ = demo_run
    weights = workdir / 'experiments' / 'demo_RAMiT_SRx2' / 'models' / 'net_g_latest.pth'
    photo = workdir / 'data' / 'val_LR_bicubic_X2' / 'chelseax2.png'
    proc = subprocess.run([sys.executable, '-m', 'ramit_cli', 'infer', '-i', str(photo), '-o', 'out', '--weights',
                           str(weights), '--threads', '1'], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip().splitlines()
    # options/demo_RAMiT_SRx2.yml: variant RAMiT, dim 16, depths [1, 1, 1, 1], num_heads [2, 2, 2, 2],
    # fuse_expand_groups 1.
    assert out[0].startswith('RAMiT x2 SR (3 channels) with dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2), '
                             f'fuse_expand_groups=1 from {weights}')
    assert out[-1] == 'out: 1 written, 0 skipped (output exists; --overwrite replaces it), 0 failed, of 1 image(s)'
    result = cv2.imread(str(tmp_path / 'out' / 'chelseax2_RAMiT_x2.png'))
    assert result.shape == cv2.imread(str(workdir / 'data' / 'val_HR' / 'chelsea.png')).shape
    # BasicSR's checkpoint (through RAMiTModel's atomic save) is readable by the umask, like BasicSR's own files.
    assert stat.S_IMODE(weights.stat().st_mode) == 0o666 & ~current_umask()


def current_umask() -> int:
    """This process's umask (set and put back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_trained_demo_checkpoint_opens_in_spandrel_and_converts(demo_run, spandrel, tmp_path):
    """The dim-16 network `ramit demo` trains, from its file alone: spandrel, then a converted copy without flags."""
    import torch
    from ramit_plugin.inference import build_network

    workdir, _ = demo_run
    weights = workdir / 'experiments' / 'demo_RAMiT_SRx2' / 'models' / 'net_g_latest.pth'
    desc = spandrel.ModelLoader().load_from_file(weights)
    ours = build_network(weights)
    assert desc.model.config == ours.config and (desc.scale, desc.purpose) == (2, 'SR')
    assert desc.tags == ['RAMiT', 'sr', '16dim', 'custom']
    x = torch.from_numpy(cv2.imread(str(workdir / 'data' / 'val_LR_bicubic_X2' / 'chelseax2.png'))[:50, :70, ::-1]
                         .copy()).permute(2, 0, 1)[None].float() / 255
    out = desc(x)
    with torch.inference_mode():
        assert torch.equal(out, protocol_forward(ours, x).clamp(0, 1))
    converted = tmp_path / 'demo.safetensors'
    assert main(['convert', str(weights), str(converted)], prog='ramit') == 0
    assert torch.equal(spandrel.ModelLoader().load_from_file(converted)(x), out)
