"""`ramit demo`: the dataset it builds from scikit-image's photos, a short end-to-end run through basicsr train (run
once, through tools/demo_table.py, which regenerates the README's table), and its checks of --workdir and --iters.

The full default demo (1000 iterations, RAMiT beating bicubic) takes minutes: `python tools/demo_table.py`.
"""
import ctypes
import importlib.util
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Optional

import cv2
import pytest
import yaml

from ramit.protocol import protocol_forward
from ramit_cli import demo
from ramit_cli.main import main
from ramit_plugin.dataprep import DataPrepError

REPO = Path(__file__).resolve().parents[2]
ITERS = 4
PR_CAPBSET_DROP = 24  # prctl option (linux/prctl.h)


def demo_table_tool():
    """tools/demo_table.py as a module."""
    spec = importlib.util.spec_from_file_location('demo_table', REPO / 'tools' / 'demo_table.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class DemoRun(NamedTuple):
    """One `ramit demo --iters ITERS` run through tools/demo_table.py."""

    workdir: Path
    table: str  # what the tool printed (stdout)
    output: str  # the demo's own output, which the tool echoes on stderr


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory) -> DemoRun:
    """`python tools/demo_table.py --workdir wd --iters 4 --threads 1`, run once in a fresh folder."""
    cwd = tmp_path_factory.mktemp('demo')
    proc = subprocess.run([sys.executable, str(REPO / 'tools' / 'demo_table.py'), '--workdir', 'wd', '--iters',
                           str(ITERS), '--threads', '1'], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return DemoRun(cwd / 'wd', proc.stdout, proc.stderr)


def meta_sizes(lmdb_dir: Path) -> dict:
    """key -> (h, w) from an LMDB's meta_info.txt."""
    sizes = {}
    for line in (lmdb_dir / 'meta_info.txt').read_text().splitlines():
        name, shape, _ = line.split(' ')
        h, w, _ = map(int, shape.strip('()').split(','))
        sizes[name[:-4]] = (h, w)
    return sizes


def test_demo_dataset_is_a_paired_x2_lmdb_set_with_held_out_photos(demo_run):
    data = demo_run.workdir / 'data'
    gt, lq = meta_sizes(data / 'train_HR_sub.lmdb'), meta_sizes(data / 'train_LR_bicubic_X2_sub.lmdb')
    assert set(gt) == set(lq) and len(gt) > 100
    assert all(gt[key] == (2 * lq[key][0], 2 * lq[key][1]) == (160, 160) for key in gt)
    train_photos = {key.rsplit('_s', 1)[0] for key in gt}
    assert train_photos == set(demo.TRAIN_PHOTOS)
    # Validation photos are whole, mod-cropped to even sizes, and never seen in training.
    val = sorted(p.stem for p in (data / 'val_HR').glob('*.png'))
    assert val == sorted(demo.VAL_PHOTOS) and not train_photos & set(val)
    for name in val:
        hr = cv2.imread(str(data / 'val_HR' / f'{name}.png'))
        lr = cv2.imread(str(data / 'val_LR_bicubic_X2' / f'{name}x2.png'))
        assert hr.shape == (2 * lr.shape[0], 2 * lr.shape[1], 3)
    assert not [p.name for p in demo_run.workdir.iterdir() if p.name.startswith('.')]


def test_demo_records_what_its_dataset_holds(demo_run):
    """data/ lists every file it holds in its record, so `--overwrite` of a data command never takes it for its own."""
    data = demo_run.workdir / 'data'
    record = json.loads((data / '.ramit-output.json').read_text())
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob('*') if p.is_file())
    assert record == {'command': 'demo', 'files': [f for f in files if f != '.ramit-output.json']}
    assert 'train_HR_sub.lmdb/data.mdb' in record['files'] and 'photos/val/chelsea.png' in record['files']
    # The steps inside it were recorded by the commands that wrote them.
    assert json.loads((data / 'train_HR_sub.lmdb' / '.ramit-output.json').read_text())['command'] == 'make-lmdb'
    assert json.loads((data / 'val_HR' / '.ramit-output.json').read_text())['command'] == 'make-lr'


def test_demo_trains_through_basicsr_and_prints_psnr_against_bicubic(demo_run):
    workdir, table, output = demo_run
    opt = yaml.safe_load((workdir / demo.OPTION_FILE).read_text())
    assert opt['train']['total_iter'] == ITERS and opt['train']['scheduler']['periods'] == [ITERS]
    experiment = workdir / 'experiments' / opt['name']
    assert (experiment / 'models' / 'net_g_latest.pth').is_file()
    assert (experiment / 'training_states' / f'{ITERS}.state').is_file()
    assert 'demo: done in ' in output and f'experiment in {experiment}' in output
    # tools/demo_table.py printed the demo's table, and only that (plus the time).
    lines = table.splitlines()
    assert lines[0] == f'PSNR-Y (dB, border 2) on held-out photos, x2, after {ITERS} iterations:'
    assert lines[1].split() == ['photo', 'bicubic', 'RAMiT']
    assert re.fullmatch(r'\(`ramit demo` took \d+ s\)', lines[-1])
    assert '\n'.join(lines[:-1]) in output
    rows = dict(re.findall(r'^  (\w+) +(\d+\.\d\d +\d+\.\d\d)$', table, re.M))
    assert set(rows) == set(demo.VAL_PHOTOS) | {'mean'} and len(lines) == 4 + len(rows)
    bicubic, ramit = map(float, rows['mean'].split())
    verdict = re.fullmatch(r'RAMiT (beats|does not beat) bicubic by ([+-]\d+\.\d\d) dB.*', lines[-2])
    assert verdict and (verdict[1] == 'beats') == (ramit > bicubic)
    assert abs(float(verdict[2]) - (ramit - bicubic)) < 0.011  # the difference of the unrounded means
    # The table's RAMiT column is what BasicSR's own validation (RAMiTModel, calculate_psnr) logged last.
    logged = re.findall(r'# psnr: (\d+\.\d+)', next(experiment.glob('train_*.log')).read_text())
    assert logged and abs(float(logged[-1]) - ramit) < 0.006
    assert 20 < bicubic < 40


def test_demo_table_takes_the_last_table_and_says_when_there_is_none():
    tool = demo_table_tool()
    table = 'PSNR-Y (dB) after 2 iterations:\n  mean  30.00  31.00\nRAMiT beats bicubic by +1.00 dB'
    assert tool.final_table(f'demo: training\n{table.replace("2 it", "1 it")}\n{table}\ndemo: done') == table
    with pytest.raises(ValueError, match='no PSNR table'):
        tool.final_table('demo: training\nTraceback ...')


def test_demo_refuses_bad_iters_before_writing_anything(tmp_path, capsys):
    assert main(['demo', '--workdir', str(tmp_path / 'wd'), '--iters', '0'], prog='ramit') == 2
    assert capsys.readouterr().err == 'ramit demo: error: --iters 0: must be at least 1\n'
    assert not (tmp_path / 'wd').exists()


def light_demo(workdir: Path, preexec: Optional[Callable[[], None]] = None) -> subprocess.CompletedProcess:
    """`ramit demo --workdir WORKDIR` in a fresh process (``preexec`` run in it first), which reports afterwards which
    heavy modules it imported (the demo module, torch, basicsr)."""
    script = ('import sys\nfrom ramit_cli.main import main\n'
              f'code = main(["demo", "--workdir", {str(workdir)!r}], prog="ramit")\n'
              'print(sorted(m for m in ("ramit_cli.demo", "torch", "basicsr") if m in sys.modules))\n'
              'sys.exit(code)\n')
    return subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=120,
                          preexec_fn=preexec)


def without_root_override() -> None:
    """In a child process of root: drop the capabilities that let root write and search any folder
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so that permissions apply to it as to any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), 'prctl(PR_CAPBSET_DROP) failed')


@pytest.fixture
def read_only_folder(tmp_path) -> Iterator[Path]:
    """A folder light_demo(..., unprivileged()) cannot write to."""
    folder = tmp_path / 'locked'
    folder.mkdir(mode=0o555)
    yield folder
    folder.chmod(0o755)


def unprivileged() -> Optional[Callable[[], None]]:
    """What makes light_demo's process subject to permissions: for root, without_root_override; else nothing."""
    return without_root_override if os.geteuid() == 0 else None


def test_a_workdir_that_is_a_file_is_one_line_before_anything_heavy(tmp_path):
    workdir = tmp_path / 'notes.txt'
    workdir.write_text('my notes')
    proc = light_demo(workdir)
    assert (proc.returncode, proc.stderr) == (2, f'ramit demo: error: --workdir {workdir}: is a file; give a folder '
                                                 'for the demo\n')
    assert proc.stdout == '[]\n'  # neither the demo's module nor torch nor basicsr was imported
    assert workdir.read_text() == 'my notes'


def test_an_unwritable_workdir_is_one_line_before_anything_heavy(read_only_folder):
    workdir = read_only_folder / 'new' / 'wd'
    proc = light_demo(workdir, unprivileged())
    assert (proc.returncode, proc.stderr) == (2, f'ramit demo: error: --workdir {workdir}: {read_only_folder} is '
                                                 'not writable\n')
    assert proc.stdout == '[]\n'
    assert list(read_only_folder.iterdir()) == []


def test_demo_dataset_build_is_all_or_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, 'TRAIN_PHOTOS', ('astronaut', 'no_such_photo'))
    with pytest.raises(DataPrepError, match='too few scikit-image photos'):
        demo.build_dataset(tmp_path / 'data')
    assert list(tmp_path.iterdir()) == []


def current_umask() -> int:
    """This process's umask (set and put back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_trained_demo_checkpoint_runs_through_ramit_infer(demo_run, tmp_path, ramit, capsys, monkeypatch):
    """The network `ramit demo` trains (dim 16, one block per stage) is no published size: infer rebuilds it."""
    weights = demo_run.workdir / 'experiments' / 'demo_RAMiT_SRx2' / 'models' / 'net_g_latest.pth'
    photo = demo_run.workdir / 'data' / 'val_LR_bicubic_X2' / 'chelseax2.png'
    monkeypatch.chdir(tmp_path)
    assert ramit('infer', '-i', str(photo), '-o', 'out', '--weights', str(weights), '--backend', 'torch',
                 '--threads', '1') == 0
    out = capsys.readouterr().out.strip().splitlines()
    # options/demo_RAMiT_SRx2.yml: variant RAMiT, dim 16, depths [1, 1, 1, 1], num_heads [2, 2, 2, 2],
    # fuse_expand_groups 1.
    assert out[0].startswith('RAMiT x2 SR (3 channels) with dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2), '
                             f'fuse_expand_groups=1 from {weights}')
    assert out[-1] == 'out: 1 written, 0 skipped (output exists; --overwrite replaces it), 0 failed, of 1 image(s)'
    result = cv2.imread(str(tmp_path / 'out' / 'chelseax2_RAMiT_x2.png'))
    assert result.shape == cv2.imread(str(demo_run.workdir / 'data' / 'val_HR' / 'chelsea.png')).shape
    # BasicSR's checkpoint (through RAMiTModel's atomic save) is readable by the umask, like BasicSR's own files.
    assert stat.S_IMODE(weights.stat().st_mode) == 0o666 & ~current_umask()


def test_the_trained_demo_checkpoint_opens_in_spandrel_and_converts(demo_run, spandrel, tmp_path, ramit):
    """The dim-16 network `ramit demo` trains, from its file alone: spandrel, then a converted copy without flags."""
    import torch

    from ramit.inference import load_network

    weights = demo_run.workdir / 'experiments' / 'demo_RAMiT_SRx2' / 'models' / 'net_g_latest.pth'
    desc = spandrel.ModelLoader().load_from_file(weights)
    ours = load_network(weights)
    assert desc.model.hparams == ours.hparams and (desc.scale, desc.purpose) == (2, 'SR')
    assert desc.tags == ['RAMiT', 'sr', '16dim', 'custom']
    x = torch.from_numpy(cv2.imread(str(demo_run.workdir / 'data' / 'val_LR_bicubic_X2' / 'chelseax2.png'))
                         [:50, :70, ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    out = desc(x)
    with torch.inference_mode():
        assert torch.equal(out, protocol_forward(ours, x).clamp(0, 1))
    converted = tmp_path / 'demo.safetensors'
    assert ramit('convert', str(weights), str(converted)) == 0
    assert torch.equal(spandrel.ModelLoader().load_from_file(converted)(x), out)
