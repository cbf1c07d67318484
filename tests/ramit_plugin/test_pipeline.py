"""`basicsr train` / `basicsr test` (ramit_plugin.pipeline, ramit_plugin.experiment): published numbers, training,
resume, the training log, a NaN stop, a diverged run, batch and memory checks, the experiment lock, torchrun on CPU.

The commands run in this process (``basicsr`` fixture) unless only a real process shows it (torchrun, the console
script, a lock held by another process)."""
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Tuple

import psutil
import pytest
import torch
import torch.distributed as dist

from ramit_plugin import pipeline
from ramit_plugin.pipeline import BASICSR_MIRRORED, mirrored_hashes
from tests.conftest import ranks_failure
from tests.ramit_plugin.conftest import BasicsrResult, last_line, outputs, snapshot, tiny_network

# ../shared/ramit_reference/README.md: Set5 PSNR-Y / SSIM-Y of the published checkpoints.
REFERENCE_SET5 = {
    ('RAMiT-1', 2): (38.184, 0.9612), ('RAMiT-1', 3): (34.618, 0.9292), ('RAMiT-1', 4): (32.537, 0.8987),
    ('RAMiT-slimSR', 2): (38.141, 0.9611), ('RAMiT-slimSR', 3): (34.595, 0.9289), ('RAMiT-slimSR', 4): (32.472, 0.8980),
}
LOSS_LINE = re.compile(r'iter:\s+(\d+), lr:\(([\d.e+-]+),\).*l_pix: ([\d.e+-]+)')
VALIDATION = re.compile(r'Validation tinyval\n\t # psnr: ([\d.]+)\tBest: ([\d.]+) @ (\d+) iter')


def losses(log_text: str) -> Dict[int, Tuple[float, float]]:
    """iteration -> (lr, l_pix) from a BasicSR training log."""
    return {int(it): (float(lr), float(loss)) for it, lr, loss in LOSS_LINE.findall(log_text)}


def training_logs(experiment: Path) -> Dict[str, str]:
    """File name -> text of the training logs in an experiment folder, oldest first."""
    return {p.name: p.read_text() for p in sorted(experiment.glob('train_*.log'))}


def test_basicsr_test_reproduces_the_published_set5_table(tmp_path, weights_dir, datasets_dir, options_file,
                                                          set5_options, basicsr):
    files = [options_file(tmp_path / f'{v}_x{s}.yml', set5_options(v, s, datasets_dir, weights_dir))
             for v, s in REFERENCE_SET5]
    measured = {}
    # One thread, as the whole suite (the other worker has the second core): two took 1.5x the CPU time here.
    for path in files:
        result = basicsr('test', '-opt', str(path), cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        for metric, value, run in re.findall(r'# (psnr|ssim): ([\d.]+)\s+Best: [\d.]+ @ (\S+) iter', result.stderr):
            measured.setdefault(run, {})[metric] = float(value)
    for (variant, scale), (psnr, ssim) in REFERENCE_SET5.items():
        got = measured[f'{variant}_x{scale}']
        assert abs(got['psnr'] - psnr) <= 0.01, (variant, scale, got)
        assert abs(got['ssim'] - ssim) <= 0.0005, (variant, scale, got)
    assert (tmp_path / 'results' / 'RAMiT-1_x2').is_dir()


@pytest.fixture(scope='module')
def full_run(tmp_path_factory, sr_data, tiny_options, options_file, basicsr) -> Tuple[Path, BasicsrResult]:
    """An uninterrupted 20-iteration run from LMDB: checkpoints every 10, validation every 8 (so the last one comes
    after the loop); its folder and result."""
    root = tmp_path_factory.mktemp('full')
    opt = tiny_options(sr_data, name='full', total_iter=20)
    opt['val']['val_freq'] = 8
    options_file(root / 'full.yml', opt)
    result = basicsr('train', '-opt', 'full.yml', cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result


def test_training_learns_and_saves_what_basicsr_saves(full_run):
    root, result = full_run
    curve = losses(result.stderr)
    assert sorted(curve) == [5, 10, 15, 20]
    assert curve[20][1] < 0.7 * curve[5][1]  # the loss falls
    exp = root / 'experiments' / 'full'
    assert {p.name for p in (exp / 'models').iterdir()} == {'net_g_10.pth', 'net_g_20.pth', 'net_g_latest.pth'}
    assert {p.name for p in (exp / 'training_states').iterdir()} == {'10.state', '20.state'}
    assert (exp / 'full.yml').is_file()  # the option file, copied
    # Its log file is closed: another process continuing the experiment would take an open file in it for a run.
    assert not [f.path for f in psutil.Process().open_files() if f.path.startswith(f'{exp}{os.sep}')]


def test_the_training_log_is_short_and_counts_the_iterations_run(full_run):
    root, result = full_run
    log, = training_logs(root / 'experiments' / 'full').values()
    # The network in one line (basicsr logs its whole module tree, hundreds of lines).
    network = [line.split(' INFO: ')[1] for line in log.splitlines() if ' INFO: Network: ' in line]
    assert network == ['Network: RAMiT-1 x2 SR (3 channels) with dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2), '
                       'window_size=4, 19,348 parameters (RAMiT)']
    assert '(shallow)' not in log and 'ModuleList' not in log
    assert 'Training statistics: 8 images x enlarge ratio 1, batch 4 per process x 1 process(es): 2 iterations per ' \
           'epoch; 20 iterations.' in log
    # basicsr's eta of the last iteration is '-1 day, 23:59:59'; its loop runs one iteration past total_iter per epoch.
    assert '-1 day' not in log and re.findall(r'eta: ([^,]+),', log)[-1] == '0:00:00'
    assert max(int(i) for i in re.findall(r'iter:\s+(\d+)', log)) == 20
    validations = VALIDATION.findall(log)
    assert [int(at) for _, _, at in validations] == [8, 16, 20]  # the last one after the loop, at iteration 20
    assert validations[-1][0] == validations[-1][1]
    assert result.stderr.count('Validation tinyval') == 3


def test_a_log_name_taken_within_its_second_gets_a_new_file(tmp_path):
    # The log name's timestamp is in seconds: a run resumed within the same second must not erase the log before it.
    name = tmp_path / 'train_cut_20261203_201852.log'
    name.write_text('the first run\n')
    for run in ('second', 'third'):
        buffered = pipeline.buffer_log()
        try:
            logging.getLogger('basicsr').info('before the file: %s', run)
            pipeline.open_log(str(name), buffered).info('after: %s', run)
        finally:
            pipeline.close_log()
    assert name.read_text() == 'the first run\n'
    for run, path in (('second', '_2'), ('third', '_3')):
        lines = (tmp_path / f'train_cut_20261203_201852{path}.log').read_text().splitlines()
        assert [line.split(' INFO: ')[1] for line in lines] == [f'before the file: {run}', f'after: {run}']


def test_resume_nan_stop_and_a_damaged_newest_checkpoint(tmp_path, full_run, sr_data, tiny_options, options_file,
                                                         basicsr):
    # Interrupted after the iteration-10 save, then resumed with --auto_resume to the same length. The name is
    # taken by an earlier experiment: it is moved aside with a timestamp, losing nothing.
    cut_dir = tmp_path / 'experiments' / 'cut'
    (cut_dir / 'models').mkdir(parents=True)
    (cut_dir / 'models' / 'net_g_5.pth').write_bytes(b'earlier run')
    options_file(tmp_path / 'cut.yml', tiny_options(sr_data, name='cut', total_iter=10))
    assert basicsr('train', '-opt', 'cut.yml', cwd=tmp_path).returncode == 0
    archived, = (tmp_path / 'experiments').glob('cut_archived_*')
    assert [p.relative_to(archived) for p in archived.rglob('*') if p.is_file()] == [Path('models/net_g_5.pth')]
    assert (archived / 'models' / 'net_g_5.pth').read_bytes() == b'earlier run'
    result = basicsr('train', '-opt', 'cut.yml', '--auto_resume', '--force_yml', 'train:total_iter=20', cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Resuming training from epoch: 4, iter: 10.' in result.stderr
    resumed_curve = losses(result.stderr)
    assert sorted(resumed_curve) == [15, 20]
    full_curve = losses(full_run[1].stderr)
    assert [resumed_curve[i][0] for i in (15, 20)] == [full_curve[i][0] for i in (15, 20)]  # same lr schedule
    a = torch.load(full_run[0] / 'experiments' / 'full' / 'training_states' / '20.state', weights_only=True)
    b = torch.load(cut_dir / 'training_states' / '20.state', weights_only=True)
    assert (a['iter'], a['schedulers']) == (b['iter'], b['schedulers'])
    assert a['optimizers'][0]['param_groups'] == b['optimizers'][0]['param_groups']
    steps = [{k: int(v['step']) for k, v in s['optimizers'][0]['state'].items()} for s in (a, b)]
    assert steps[0] == steps[1] and set(steps[0].values()) == {20}
    # Two runs in one process: each log file holds its own run only.
    first, second = training_logs(cut_dir).values()
    assert [text.count(' INFO: Network: ') for text in (first, second)] == [1, 1]
    assert 'Resuming training' not in first and 'Resuming training from epoch: 4, iter: 10.' in second

    # A NaN loss stops the run with one line; the last good checkpoint is untouched and nothing new is written.
    before = snapshot(cut_dir / 'models')
    result = basicsr('train', '-opt', 'cut.yml', '--auto_resume', '--force_yml', 'train:total_iter=30',
                     'train:pixel_opt:loss_weight=!!float nan', cwd=tmp_path)
    assert result.returncode == 1
    assert last_line(result.stderr) == (
        'basicsr train: error: training stopped at iter 21: loss l_pix is nan; nothing was saved for this iteration; '
        f"the last good checkpoint is {cut_dir / 'models' / 'net_g_20.pth'} (iteration 20; resume with "
        '--auto_resume)')
    assert 'Traceback' not in result.stderr
    assert snapshot(cut_dir / 'models') == before
    assert {p.name for p in (cut_dir / 'training_states').iterdir()} == {'10.state', '20.state'}

    # The newest checkpoint holds NaN weights: --auto_resume says so and continues from the one before.
    net_g_20 = cut_dir / 'models' / 'net_g_20.pth'
    damaged = torch.load(net_g_20, weights_only=True)
    key = next(k for k, v in damaged['params'].items() if v.is_floating_point())
    damaged['params'][key].fill_(float('nan'))
    torch.save(damaged, net_g_20)
    result = basicsr('train', '-opt', 'cut.yml', '--auto_resume', '--force_yml', 'train:total_iter=20', cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    notes = [line for line in result.stderr.splitlines() if line.startswith('--auto_resume: ')]
    assert notes == [f'--auto_resume: skipping iteration 20: {net_g_20}: 1 tensor(s) hold NaN or inf values (e.g. '
                     f'{key}): a damaged or diverged checkpoint',
                     '--auto_resume: resuming from iteration 10, the newest complete checkpoint']
    assert 'Resuming training from epoch: 4, iter: 10.' in result.stderr
    assert all(v.isfinite().all() for v in torch.load(net_g_20, weights_only=True)['params'].values())


def test_a_diverged_run_names_the_last_good_checkpoint_not_the_damaged_one(tmp_path, sr_data, tiny_options,
                                                                           options_file, basicsr):
    """The learning rate jumps by 1e30 at iteration 3: that step's weights are finite but huge (saved at 3), and the
    next loss is not finite. The message points to iteration 2, not to the checkpoint of the weights that failed."""
    opt = tiny_options(sr_data, name='diverged', total_iter=8, warmup_iter=-1)
    opt['train']['scheduler'] = dict(type='MultiStepLR', milestones=[2], gamma=1e30)
    opt['logger'].update(print_freq=1, save_checkpoint_freq=1)
    options_file(tmp_path / 'diverged.yml', opt)
    result = basicsr('train', '-opt', 'diverged.yml', cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    models, states = tmp_path / 'experiments' / 'diverged' / 'models', tmp_path / 'experiments' / 'diverged' / \
        'training_states'
    stopped = int(re.search(r'training stopped at iter (\d+)', last_line(result.stderr)).group(1))
    good = stopped - 2
    assert re.fullmatch(
        rf'basicsr train: error: training stopped at iter {stopped}: loss l_pix is (nan|inf); nothing was saved for '
        rf'this iteration; the last good checkpoint is {re.escape(str(models / f"net_g_{good}.pth"))} \(iteration '
        rf'{good}; resume from it with --force_yml path:resume_state={re.escape(str(states / f"{good}.state"))}\)',
        last_line(result.stderr)), last_line(result.stderr)
    damaged = torch.load(models / f'net_g_{stopped - 1}.pth', weights_only=True)['params']
    assert max(v.abs().max().item() for v in damaged.values() if v.is_floating_point()) > 1e20
    assert 'Traceback' not in result.stderr


def test_torchrun_two_cpu_processes_with_warm_start_and_progressive(tmp_path, sr_data, tiny_options, options_file):
    opt = tiny_options(sr_data, name='ddp', total_iter=8, warm_start_iter=3,
                       progressive=dict(iters=[0, 6], gt_sizes=[16, 32], batch_sizes=[4, 2]))
    torch.manual_seed(3)
    x2 = tiny_network(opt).state_dict()
    torch.save(x2, tmp_path / 'x2.pth')
    opt['path']['pretrain_network_g'] = str(tmp_path / 'x2.pth')
    opt['logger'].update(print_freq=1, save_checkpoint_freq=3)
    opt['val']['val_freq'] = 100
    options_file(tmp_path / 'ddp.yml', opt)
    script = Path(sys.executable).parent / 'basicsr'
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                           str(script), 'train', '-opt', 'ddp.yml', '--launcher', 'pytorch'], cwd=tmp_path,
                          capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'), timeout=300)
    assert proc.returncode == 0, ranks_failure(proc.stderr)
    log = proc.stderr
    # 8 images, 4 per process and 2 processes: 1 iteration per epoch only if both ranks share the data.
    assert 'batch 4 per process x 2 process(es): 1 iterations per epoch; 8 iterations.' in log
    assert re.search(r'Network: RAMiT-1 x2 SR .*, 19,348 parameters \(DistributedDataParallel\)', log)
    assert 'weights identical on all 2 processes' in log
    assert 'progressive: iter 1 -> patch 16, batch 4' in log and 'progressive: iter 6 -> patch 32, batch 2' in log
    assert 'warm start: iter 4: all parameters train from now on' in log
    models = tmp_path / 'experiments' / 'ddp' / 'models'
    at3 = torch.load(models / 'net_g_3.pth', weights_only=True)['params']
    at6 = torch.load(models / 'net_g_6.pth', weights_only=True)['params']
    body = [k for k in x2 if not k.startswith('to_target.')]
    assert all(torch.equal(at3[k], x2[k]) for k in body)
    assert not any(torch.equal(at3[k], x2[k]) for k in x2 if k.startswith('to_target.'))
    assert all(not torch.equal(at6[k], x2[k]) for k in body if k.endswith('weight'))


def test_launched_runs_close_their_process_group_done_or_failed(tmp_path, sr_data, tiny_options, options_file,
                                                                basicsr, one_process_launch):
    """`--launcher pytorch` opens a gloo process group; the run destroys it before returning, also after a failure
    (see ramit.training.end_process_group)."""
    options_file(tmp_path / 'x.yml', tiny_options(sr_data, total_iter=2))
    result = basicsr('train', '-opt', 'x.yml', '--launcher', 'pytorch', cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not dist.is_initialized()
    opt = tiny_options(sr_data, name='gone')
    opt['datasets']['train']['dataroot_gt'] = str(tmp_path / 'gone.lmdb')
    options_file(tmp_path / 'gone.yml', opt)
    result = basicsr('train', '-opt', 'gone.yml', '--launcher', 'pytorch', cwd=tmp_path)
    assert result.returncode == 2 and 'gone.lmdb' in last_line(result.stderr)
    assert not dist.is_initialized()


def test_help_explains_the_options_and_the_console_script_runs(tmp_path, basicsr, run_basicsr):
    result = basicsr('train', '--help', cwd=tmp_path)
    assert result.returncode == 0
    for text in ('-opt X.yml', '--launcher {none,pytorch,slurm}', '--auto_resume', '--debug', '--force_yml',
                 '--local_rank LOCAL_RANK, --local-rank LOCAL_RANK', 'torchrun --nproc_per_node=2'):
        assert text in result.stdout
    proc = run_basicsr('test', '--help', cwd=tmp_path)  # the console script itself (help needs no heavy import)
    assert proc.returncode == 0 and proc.stdout.startswith('usage: basicsr test [-h] -opt X.yml')


def test_basicsr_functions_the_pipeline_follows_are_unchanged():
    """ramit_plugin.pipeline re-implements basicsr's train and test pipelines step for step: a basicsr release that
    changes one of those functions must be reviewed, not silently trusted."""
    found = mirrored_hashes()
    changed = [name for name, digest in BASICSR_MIRRORED.items() if found[name] != digest]
    assert not changed, (
        f"basicsr changed {', '.join(f'{n} (hash {found[n]}, was {BASICSR_MIRRORED[n]})' for n in changed)}: "
        'ramit_plugin/pipeline.py follows these functions step for step; review it against their new source, then '
        'update BASICSR_MIRRORED')


def test_an_absurd_batch_is_refused_before_any_data_loader_exists(tmp_path, sr_data, tiny_options, options_file,
                                                                  basicsr, monkeypatch):
    def no_loader(*args, **kwargs):
        raise AssertionError('a DataLoader was built')

    monkeypatch.setattr(pipeline, 'build_dataloader', no_loader)
    opt = tiny_options(sr_data, name='absurd')
    opt['datasets']['train'].update(batch_size_per_gpu=9, dataset_enlarge_ratio=1)
    options_file(tmp_path / 'absurd.yml', opt)
    result = basicsr('train', '-opt', 'absurd.yml', cwd=tmp_path)
    assert result.returncode == 2
    assert last_line(result.stderr) == (
        "basicsr train: error: datasets:train:batch_size_per_gpu: 9 per process x 1 process(es) is more than the 8 "
        "samples of dataset 'tiny' per epoch (8 x dataset_enlarge_ratio 1): no batch can be formed")
    assert 'Traceback' not in result.stderr and outputs(tmp_path) == []


def test_a_batch_beyond_the_memory_is_refused_before_anything_is_written(tmp_path, sr_data, tiny_options,
                                                                         options_file, basicsr):
    """A batch the samples allow (8 images enlarged a million times) but no machine's memory: one line naming the
    option, before a batch is loaded (the OOM killer would otherwise end the run, and maybe other jobs)."""
    opt = tiny_options(sr_data, name='huge')
    opt['datasets']['train'].update(batch_size_per_gpu=1_000_000, dataset_enlarge_ratio=1_000_000, gt_size=48)
    options_file(tmp_path / 'huge.yml', opt)
    result = basicsr('train', '-opt', 'huge.yml', cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert re.fullmatch(r'basicsr train: error: datasets:train:batch_size_per_gpu: 1000000 patches of 24x24 LQ pixels '
                        r'need about [\d.]+ GiB for one training step of RAMiT-1 x2 SR .*, but cpu has [\d.]+ GiB '
                        r'available; use a smaller batch or patch', last_line(result.stderr)), result.stderr[-2000:]
    assert 'Traceback' not in result.stderr and outputs(tmp_path) == []


def test_a_running_experiment_is_not_started_twice(tmp_path, sr_data, tiny_options, options_file, basicsr,
                                                   lock_holder):
    exp = tmp_path / 'experiments' / 'tiny'
    (exp / 'models').mkdir(parents=True)
    (exp / 'models' / 'net_g_5.pth').write_bytes(b'the running experiment')
    holder = lock_holder(tmp_path / 'experiments' / '.tiny.lock')
    options_file(tmp_path / 'x.yml', tiny_options(sr_data))
    before = snapshot(tmp_path / 'experiments')
    result = basicsr('train', '-opt', 'x.yml', cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (f'basicsr train: error: {exp} is in use by a running process (pid {holder.pid}, lock '
                             f"{tmp_path / 'experiments' / '.tiny.lock'}); wait for it to finish or stop it first\n")
    assert snapshot(tmp_path / 'experiments') == before  # not moved aside, nothing added


def test_a_running_experiment_whose_lock_file_was_deleted_is_still_recognised(tmp_path, sr_data, tiny_options,
                                                                              options_file, basicsr, lock_holder):
    """The lock file was deleted (a clean-up script, a user) while the experiment runs: its open log file in the
    experiment folder still shows it is running."""
    exp = tmp_path / 'experiments' / 'tiny'
    exp.mkdir(parents=True)
    holder = lock_holder(exp / 'train_tiny_20240101_000000.log')  # any file the run keeps open inside its folder
    options_file(tmp_path / 'x.yml', tiny_options(sr_data))
    before = snapshot(exp)
    result = basicsr('train', '-opt', 'x.yml', cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (f'basicsr train: error: {exp} is in use by a running process (pid {holder.pid} has '
                             f'files open in {exp}); wait for it to finish or stop it first\n')
    assert snapshot(exp) == before
    assert not [p for p in (tmp_path / 'experiments').iterdir() if p.name.startswith('tiny_archived')]


@pytest.mark.parametrize('print_network', [False, True], ids=['one line', 'module tree'])
def test_basicsr_test_saves_images_without_a_suffix_and_logs_the_entry_it_loaded(print_network, tmp_path, sr_data,
                                                                                 tiny_options, options_file,
                                                                                 basicsr):
    opt = tiny_options(sr_data, name='tested')
    torch.manual_seed(0)
    torch.save(dict(params=tiny_network(opt).state_dict()), tmp_path / 'params_only.pth')
    opt.pop('train')
    opt['datasets'] = dict(test_1=opt['datasets']['val'])
    opt['path']['pretrain_network_g'] = str(tmp_path / 'params_only.pth')
    opt['val'] = dict(save_img=True, metrics=opt['val']['metrics'])  # no suffix
    opt['logger'] = dict(print_network=True) if print_network else {}
    options_file(tmp_path / 'test.yml', opt)
    result = basicsr('test', '-opt', 'test.yml', cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = tmp_path / 'results' / 'tested'
    assert sorted(p.name for p in (results / 'visualization' / 'tinyval').iterdir()) == [
        f'{i:04d}_tested.png' for i in range(8)]
    log = next(results.glob('test_tested_*.log')).read_text()
    assert f"Loading RAMiT from {tmp_path / 'params_only.pth'} (weights: params)." in log
    assert log.count(' INFO: Network: RAMiT-1 x2 SR (3 channels) with dim=16') == 1
    assert ('(shallow)' in log) == print_network
