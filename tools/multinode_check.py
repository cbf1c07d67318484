"""Two-node training on one machine, as `torchrun` runs it across machines: CPU processes (gloo) on the loopback
address stand for two nodes, each started with the README's multi-node command line.

For `basicsr train` and `ramit mm-train` (tiny RAMiT, generated images) it runs and checks:
1. an uninterrupted two-node run: exit 0 on both nodes, the weights checked identical on every process at each
   checkpoint ('weights identical on all 2 processes' in the log), each checkpoint written once, one lock;
2. the same run with one node killed (SIGKILL to its torchrun and its worker) right after the first checkpoint: the
   surviving node ends within --deadline seconds, its worker printing one line that names what happened;
3. both nodes restarted with --auto_resume (--resume): the final weights equal those of run 1 bit for bit;
4. the same kill of the node that hosts the rendezvous (started first): the other ends within --deadline seconds,
   its worker printing one line.

    python tools/multinode_check.py [--workdir DIR] [--only basicsr|mm]

Prints one line per check with its measured figures and exits non-zero when any check fails.
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import psutil
import torch
import yaml

ITERS, SAVE_EVERY = 20, 10


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def write_data(root: Path) -> Dict[str, Path]:
    """HR (48x48) / LR (24x24, area) pairs of smooth random images, same names: a learnable tiny x2 set."""
    rng = np.random.default_rng(0)
    hr_dir, lr_dir = root / 'HR', root / 'LR'
    hr_dir.mkdir(parents=True)
    lr_dir.mkdir()
    yy, xx = np.mgrid[0:48, 0:48] / 48
    for i in range(8):
        img = np.stack([np.sin(2 * np.pi * (xx * rng.uniform(1, 3) + yy * rng.uniform(1, 3)) + rng.uniform(0, 6))
                        for _ in range(3)], -1)
        hr = ((img * 0.5 + 0.5) * 255).round().astype(np.uint8)
        cv2.imwrite(str(hr_dir / f'{i:03d}.png'), hr)
        cv2.imwrite(str(lr_dir / f'{i:03d}.png'), cv2.resize(hr, (24, 24), interpolation=cv2.INTER_AREA))
    return dict(hr=hr_dir, lr=lr_dir)


TINY = dict(type='RAMiT', variant='RAMiT-1', task='sr', upscale=2, dim=16, depths=[1, 1, 1, 1],
            num_heads=[2, 2, 2, 2], window_size=4)


def basicsr_options(data: Dict[str, Path], path: Path) -> List[str]:
    """A tiny `basicsr train` option file; returns the command after `basicsr`."""
    opt = dict(name='twonode', model_type='RAMiTModel', scale=2, num_gpu='auto', manual_seed=0,
               datasets=dict(train=dict(name='tiny', type='PairedImageDataset', dataroot_gt=str(data['hr']),
                                        dataroot_lq=str(data['lr']), io_backend=dict(type='disk'), gt_size=32,
                                        use_hflip=True, use_rot=True, num_worker_per_gpu=0, batch_size_per_gpu=2)),
               network_g=dict(TINY),
               train=dict(optim_g=dict(type='Adam', lr=2e-3), scheduler=dict(type='MultiStepLR', milestones=[15],
                                                                             gamma=0.5),
                          total_iter=ITERS, pixel_opt=dict(type='L1Loss', loss_weight=1.0)),
               logger=dict(print_freq=5, save_checkpoint_freq=SAVE_EVERY))
    path.write_text(yaml.safe_dump(opt))
    return ['train', '-opt', str(path), '--launcher', 'pytorch']


def mm_config(data: Dict[str, Path], path: Path) -> List[str]:
    """A tiny `ramit mm-train` config built on the shipped one; returns the command after `ramit`."""
    from ramit_plugin.resources import option_file

    generator = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY.items()}
    path.write_text(f'''
_base_ = {str(option_file('mmengine_RAMiT_SRx2.py'))!r}
model = dict(generator={generator!r})
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
    data_root={str(data['hr'].parent)!r}, data_prefix=dict(gt='HR', lq='LR'), io_backend='disk', lq_tmpl='{{}}',
    pipeline=[dict(type='PairedRandomCrop', gt_patch_size=32, scale=2), dict(type='PairedFlipRotate'),
              dict(type='PackRestorationInputs')]))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
train_cfg = dict(max_iters={ITERS}, val_interval={ITERS * 10})
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, begin=0, end={ITERS}, milestones=[15], gamma=0.5)]
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval={SAVE_EVERY}, save_best=None))
visualizer = dict(vis_backends=[dict(type='LocalVisBackend')])
''')
    return ['mm-train', str(path), '--launcher', 'pytorch', '--work-dir', 'work']


def node_command(script: str, args: List[str], port: int, node: int, run_id: str) -> List[str]:
    """The README's multi-node command line for one node (one process per node here)."""
    return ['torchrun', '--nnodes', '2', '--nproc-per-node', '1', '--node-rank', str(node), '--rdzv-backend', 'c10d',
            '--rdzv-endpoint', f'127.0.0.1:{port}', '--rdzv-id', run_id, '--max-restarts', '0',
            shutil.which(script) or script, *args]


def start_nodes(script: str, args: List[str], cwd: Path, run_id: str) -> List[subprocess.Popen]:
    """Both nodes, each in its own process group (a node's kill takes its torchrun and worker)."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    return [subprocess.Popen(node_command(script, args, port, node, run_id), cwd=cwd, env=env, start_new_session=True,
                             stdout=open(cwd / f'node{node}_{run_id}.log', 'ab'), stderr=subprocess.STDOUT)
            for node in (0, 1)]


def kill_node(proc: subprocess.Popen) -> None:
    """SIGKILL a node: its torchrun and the workers torchrun started (in sessions of their own)."""
    try:
        tree = [proc, *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for member in tree:
        try:
            os.kill(member.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def wait_all(nodes: List[subprocess.Popen], timeout: float) -> List[Optional[int]]:
    """Exit codes of ``nodes`` (None for one still running after ``timeout`` seconds, then killed)."""
    deadline = time.monotonic() + timeout
    codes = []
    for proc in nodes:
        try:
            codes.append(proc.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            kill_node(proc)
            codes.append(None)
    return codes


def final_weights(kind: str, cwd: Path) -> Dict[str, torch.Tensor]:
    """The weights the run ended with."""
    from ramit.checkpoint import read_checkpoint

    path = (cwd / 'experiments' / 'twonode' / 'models' / f'net_g_{ITERS}.pth' if kind == 'basicsr'
            else cwd / 'work' / f'iter_{ITERS}.pth')
    return read_checkpoint(path).weights


def first_checkpoint(kind: str, cwd: Path) -> Path:
    """The file whose appearance means the first checkpoint was saved (state written last)."""
    return (cwd / 'experiments' / 'twonode' / 'training_states' / f'{SAVE_EVERY}.state' if kind == 'basicsr'
            else cwd / 'work' / 'last_checkpoint')


def kill_check(kind: str, script: str, args: List[str], cwd: Path, victim: int, deadline: float
               ) -> Tuple[str, bool, str]:
    """Start both nodes, SIGKILL node ``victim`` right after the first checkpoint, time the survivor's end."""
    run_id = f'killed{victim}'
    nodes = start_nodes(script, args, cwd, run_id)
    marker = first_checkpoint(kind, cwd)
    while not marker.exists() and all(p.poll() is None for p in nodes):
        time.sleep(0.05)
    killed_at = time.monotonic()
    kill_node(nodes[victim])
    survivor = 1 - victim
    code = wait_all([nodes[survivor]], deadline)[0]
    ended = time.monotonic() - killed_at
    log = (cwd / f'node{survivor}_{run_id}.log').read_text(errors='replace')
    line = next((ln for ln in log.splitlines() if 'error:' in ln and 'distributed run' in ln), '')
    role = 'the rendezvous host' if victim == 0 else 'the other node'
    return (f'{kind}: {role} killed after iteration {SAVE_EVERY}', code not in (0, None) and bool(line),
            f'survivor ended {ended:.1f} s after the kill (exit {code}); its line: {line.strip()!r}')


def check(kind: str, root: Path, deadline: float) -> List[Tuple[str, bool, str]]:
    """The four checks of the module's docstring for one trainer; (name, passed, figures)."""
    data = write_data(root / 'data')
    script = 'basicsr' if kind == 'basicsr' else 'ramit'
    runs = {}
    for name in ('uninterrupted', 'killed', 'host_killed'):
        cwd = root / f'{kind}_{name}'
        cwd.mkdir()
        runs[name] = (cwd, (basicsr_options if kind == 'basicsr' else mm_config)(
            data, cwd / ('opt.yml' if kind == 'basicsr' else 'cfg.py')))
    cwd, args = runs['uninterrupted']
    start = time.monotonic()
    codes = wait_all(start_nodes(script, args, cwd, 'full'), 900)
    logs = ''.join(p.read_text(errors='replace') for p in cwd.rglob('*.log'))
    same = logs.count('weights identical on all 2 processes')
    saved = sorted(p.name for p in cwd.rglob('*.pth'))
    results = [(f'{kind}: two nodes, {ITERS} iterations', codes == [0, 0] and same >= ITERS // SAVE_EVERY,
                f'exit codes {codes}, {time.monotonic() - start:.0f} s, weights checked identical at {same} '
                f'checkpoint(s), checkpoints {saved}')]

    cwd, args = runs['killed']
    results.append(kill_check(kind, script, args, cwd, victim=1, deadline=deadline))
    codes = wait_all(start_nodes(script, args + (['--auto_resume'] if kind == 'basicsr' else ['--resume']), cwd,
                                 'resumed'), 900)
    try:
        resumed, full = final_weights(kind, cwd), final_weights(kind, runs['uninterrupted'][0])
        equal = all(torch.equal(resumed[k], full[k]) for k in full)
        diff = max((resumed[k] - full[k]).abs().max().item() for k in full)
    except Exception as err:  # a missing checkpoint: the check fails with what was missing
        equal, diff = False, f'{type(err).__name__}: {err}'
    results.append((f'{kind}: both nodes resumed', codes == [0, 0] and equal,
                    f'exit codes {codes}; final weights vs uninterrupted: max |diff| {diff}'))

    cwd, args = runs['host_killed']
    results.append(kill_check(kind, script, args, cwd, victim=0, deadline=deadline))
    return results


def main(argv: Optional[List[str]] = None) -> int:
    """Run the checks and print one line each; 1 when any failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--workdir', type=Path, help='where the runs go (default: a new temporary folder)')
    parser.add_argument('--only', choices=('basicsr', 'mm'))
    parser.add_argument('--deadline', type=float, default=120.0,
                        help='seconds the surviving node may take to end after the kill (120)')
    args = parser.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix='multinode_'))
    root.mkdir(parents=True, exist_ok=True)
    failed = 0
    for kind in (args.only,) if args.only else ('basicsr', 'mm'):
        (root / kind).mkdir()
        for name, passed, figures in check(kind, root / kind, args.deadline):
            failed += not passed
            print(f"{'ok  ' if passed else 'FAIL'} {name}: {figures}", flush=True)
    print(f'runs in {root}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
