"""The shipped mmengine configs: the BasicSR option files' recipe, two training iterations each, swappable test sets."""
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
import torch
import yaml
from mmengine.config import Config

from ramit.network import RAMiT
from ramit_cli.main import main
from ramit_plugin.mm.hooks import WarmStartHook
from ramit_plugin.registry import DATASETS
from ramit_plugin.resources import option_file
from tests.conftest import ranks_failure
from tests.ramit_plugin.mm.conftest import generator_weights, runner_checkpoint

TASKS = ('SRx2', 'SRx3', 'SRx4', 'CDN', 'GDN', 'LLE', 'DR')
NEW = [task for task in TASKS if task != 'SRx2']  # SRx2 trains in test_train.py
# Which generated folder (conftest's task_data) holds each config's data in the config's own layout.
DATA = {'SRx2': 'sr', 'SRx3': 'sr', 'SRx4': 'sr', 'CDN': 'clean', 'GDN': 'clean', 'LLE': 'paired', 'DR': 'paired'}
TINY = dict(dim=16, depths=[1, 1, 1, 1], num_heads=[2, 2, 2, 2], window_size=4, fuse_expand_groups=1)


def config(task: str) -> Config:
    """The shipped mmengine config of ``task``."""
    return Config.fromfile(str(option_file(f'mmengine_RAMiT_{task}.py')))


def folder(dataset: dict, key: str) -> str:
    """data_root joined with data_prefix[key], as mmengine's BaseDataset joins them."""
    return os.path.normpath(os.path.join(dataset['data_root'], dataset['data_prefix'][key]))


def yaml_recipe(task: str) -> dict:
    """What options/train_RAMiT_<task>.yml prescribes, in the terms both toolboxes share."""
    opt = yaml.safe_load(option_file(f'train_RAMiT_{task}.yml').read_text())
    train, data, val = opt['train'], opt['datasets']['train'], opt['datasets']['val']
    optim = train['optim_g']
    metrics = opt['val']['metrics']
    return dict(
        network=opt['network_g'], total=train['total_iter'], warmup=train['warmup_iter'],
        milestones=train['scheduler']['milestones'], gamma=train['scheduler']['gamma'],
        optimizer=(optim['type'], optim['lr'], tuple(optim['betas']), optim['weight_decay']),
        loss=train['pixel_opt'], warm_start=train.get('warm_start_iter', 0), progressive=train.get('progressive'),
        batch=data['batch_size_per_gpu'], gt_size=data['gt_size'], flips=(data['use_hflip'], data['use_rot']),
        train_data=(data['dataroot_gt'], data.get('dataroot_lq'), data['io_backend']['type'],
                    data.get('sigma_range'), data.get('gray', False), data.get('pairing', 'same')),
        val_data=(val['dataroot_gt'], val.get('dataroot_lq'), val.get('filename_tmpl', '{}'), val.get('sigma'),
                  val.get('gray', False)),
        metric=(metrics['psnr']['crop_border'], metrics['psnr']['test_y_channel']),
        val_freq=opt['val']['val_freq'], checkpoint_freq=opt['logger']['save_checkpoint_freq'])


def config_recipe(cfg: Config) -> dict:
    """The same terms read from an mmengine config."""
    model, data, val = cfg.model, cfg.train_dataloader.dataset, cfg.val_dataloader.dataset
    steps = {t['type']: t for t in data.pipeline}
    scale = model.generator.get('upscale', 1)
    gt_size = steps['PairedRandomCrop'].get('gt_patch_size') or steps['PairedRandomCrop']['lq_patch_size'] * scale
    warmup, halvings = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, halvings.type, halvings.end) == (
        'LinearLR', 1 / warmup.end, 'MultiStepLR', cfg.train_cfg.max_iters)
    optim = cfg.optim_wrapper.optimizer
    hooks = {h['type']: h for h in cfg.custom_hooks}
    warm_start = hooks['WarmStartHook']['iters'] if 'WarmStartHook' in hooks else 0
    if warm_start:
        assert model.pretrained and model.pretrained_exclude == ('to_target.',)
    sigma = [t.get('sigma') for t in val.pipeline if t['type'] == 'AddGaussianNoise']
    metric = cfg.val_evaluator
    return dict(
        network=model.generator, total=cfg.train_cfg.max_iters, warmup=warmup.end, milestones=halvings.milestones,
        gamma=halvings.gamma, optimizer=(optim.type, optim.lr, tuple(optim.betas), optim.weight_decay),
        loss={k: v for k, v in model.pixel_loss.items()}, warm_start=warm_start, progressive=model.get('progressive'),
        batch=cfg.train_dataloader.batch_size, gt_size=gt_size,
        flips=(steps['PairedFlipRotate']['hflip'], steps['PairedFlipRotate']['rotation']),
        train_data=(folder(data, 'gt'), folder(data, 'lq') if 'lq' in data.data_prefix else None, data.io_backend,
                    list(steps['AddGaussianNoise']['sigma_range']) if 'AddGaussianNoise' in steps else None,
                    data.get('gray', False), data.get('pairing', 'same')),
        val_data=(folder(val, 'gt'), folder(val, 'lq') if 'lq' in val.data_prefix else None, val.get('lq_tmpl', '{}'),
                  sigma[0] if sigma else None, val.get('gray', False)),
        metric=(scale if metric.crop_border == 'scale' else metric.crop_border, metric.test_y_channel),
        val_freq=cfg.train_cfg.val_interval, checkpoint_freq=cfg.default_hooks.checkpoint.interval)


@pytest.mark.parametrize('task', TASKS)
def test_config_follows_the_basicsr_option_file(task):
    cfg = config(task)
    assert config_recipe(cfg) == yaml_recipe(task)
    # One test set, the BasicSR file's validation set; test and val are separate dicts (see the next test).
    assert cfg.test_dataloader == cfg.val_dataloader and cfg.test_evaluator == cfg.val_evaluator


@pytest.mark.parametrize('task', TASKS)
def test_test_set_is_replaced_by_data_root_alone(task, task_data):
    cfg = config(task)
    cfg.merge_from_dict({'test_dataloader.dataset.data_root': str(task_data[DATA[task]])})
    assert cfg.val_dataloader.dataset.data_root != cfg.test_dataloader.dataset.data_root
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    assert len(dataset) == 4
    info = dataset.get_data_info(0)
    assert all(Path(info[k]).is_relative_to(task_data[DATA[task]]) for k in ('gt_path', 'lq_path') if k in info)
    item = dataset[0]
    assert item['inputs'].shape[0] == (1 if task == 'GDN' else 3)


@pytest.fixture(scope='module')
def x2_weights(tmp_path_factory) -> Path:
    """A tiny x2 network's weights for the x3/x4 warm start."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('x2') / 'tiny_x2.pth'
    torch.save(RAMiT(variant='RAMiT', task='sr', upscale=2, **TINY).state_dict(), path)
    return path


def overrides(task: str, data: Path, x2_weights: Optional[Path]) -> list:
    """--cfg-options for a tiny network, the generated data and 2 iterations through both stages of the recipe."""
    opts = [f'model.generator.{k}={v}'.replace(' ', '') for k, v in TINY.items()]
    opts += ['train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'train_dataloader.batch_size=2',
             'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
             'val_dataloader.num_workers=0', 'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=1',
             f'train_dataloader.dataset.data_root={data}', f'val_dataloader.dataset.data_root={data}']
    if task.startswith('SR'):
        scale = task[-1]
        # The DIV2K LMDBs become the generated folders; iteration 1 is the head-only phase, iteration 2 trains all.
        # A constant lr with AdamW's weight decay: a weight that got a zero gradient instead of none would move.
        opts += ['train_dataloader.dataset.io_backend=disk', 'train_dataloader.dataset.data_prefix.gt=HR',
                 f'train_dataloader.dataset.data_prefix.lq=LR_bicubic/X{scale}',
                 f'train_dataloader.dataset.lq_tmpl={{}}x{scale}',
                 'train_dataloader.dataset.pipeline.0.lq_patch_size=16',
                 f'model.pretrained={x2_weights}', 'custom_hooks.1.iters=1', 'optim_wrapper.optimizer.type=AdamW',
                 'optim_wrapper.optimizer.weight_decay=0.5', 'param_scheduler.0.start_factor=1.0']
    else:
        # The pipeline delivers 32x32 patches at batch 2; iteration 1 trains on 16x16 x 2, iteration 2 on 32x32 x 1.
        opts += ['train_dataloader.dataset.pipeline.0.gt_patch_size=32', 'model.progressive.iters=[0,2]',
                 'model.progressive.gt_sizes=[16,32]', 'model.progressive.batch_sizes=[2,1]']
    return opts


@pytest.mark.parametrize('task', NEW)
def test_new_config_trains_two_iterations_through_both_stages(task, task_data, x2_weights, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work_dir = tmp_path / 'work'
    argv = [str(option_file(f'mmengine_RAMiT_{task}.py')), '--work-dir', str(work_dir),
            '--cfg-options', *overrides(task, task_data[DATA[task]], x2_weights)]
    assert main(['mm-train', *argv], prog='ramit') == 0
    log = next(work_dir.glob('*/*.log')).read_text()
    assert re.search(r'Iter\(train\) \[2/2\] .*loss: [\d.]+', log)
    assert float(re.search(r'Iter\(val\) \[4/4\] +PSNR: ([\d.]+)', log).group(1)) > 0
    if not task.startswith('SR'):
        assert 'progressive: iter 1 -> patch 16, batch 2' in log
        assert 'progressive: iter 2 -> patch 32, batch 1' in log
        return
    assert 'warm start: iter 1 to 1 train only to_target.*' in log
    assert 'warm start: iter 2: all parameters train from now on' in log
    check_warm_start(work_dir, int(task[-1]), x2_weights)


def test_torchrun_two_processes_keep_the_warm_start_weights_bit_identical(task_data, x2_weights, tmp_path):
    """Two CPU processes (gloo) train the x3 config: validation is split over the ranks and gathered, checkpoints
    are saved; with DDP the frozen weights keep requiring gradients, and the optimizer step hook drops them."""
    work_dir = tmp_path / 'work'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
           '-m', 'ramit_cli', 'mm-train', str(option_file('mmengine_RAMiT_SRx3.py')),
           '--work-dir', str(work_dir), '--launcher', 'pytorch',
           '--cfg-options', *overrides('SRx3', task_data['sr'], x2_weights)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, ranks_failure(proc.stderr)
    log = next(work_dir.glob('*/*.log')).read_text()
    assert 'Distributed training: True' in log
    # The 4 validation images are split over the two ranks (2 iterations each), then gathered for the metric.
    assert re.search(r'Iter\(val\) \[2/2\] +PSNR: [\d.]+', log)
    assert runner_checkpoint(work_dir / 'iter_2.pth')['meta']['iter'] == 2
    check_warm_start(work_dir, 3, x2_weights)


def check_warm_start(work_dir: Path, scale: int, x2_weights: Path) -> None:
    """iter_1.pth (head-only phase) has the x2 body bit for bit and stepped only the head; iter_2.pth trained all."""
    x2 = torch.load(x2_weights)
    checkpoints = [runner_checkpoint(work_dir / f'iter_{i}.pth') for i in (1, 2)]
    after = [generator_weights(c) for c in checkpoints]
    head = {k for k in after[0] if k.startswith('to_target.')}
    body = set(after[0]) - head
    assert body == {k for k in x2 if not k.startswith('to_target.')}
    # The head-only phase: every weight the x2 model gave stays bit-identical; only the head got optimizer steps.
    assert all(torch.equal(after[0][k], x2[k]) for k in body)
    params = [name for name, _ in RAMiT(variant='RAMiT', task='sr', upscale=scale, **TINY).named_parameters()]
    stepped = [len(c['optimizer']['state']) for c in checkpoints]
    assert stepped == [len(head), len(params)] and head < set(params)
    # Then everything trains.
    assert sum(not torch.equal(after[1][k], x2[k]) for k in body) > 0.9 * len(body)


def test_progressive_stage_larger_than_the_delivered_patch_is_one_line(task_data, tmp_path, capsys):
    argv = [str(option_file('mmengine_RAMiT_CDN.py')), '--work-dir', str(tmp_path / 'work'), '--cfg-options',
            *overrides('CDN', task_data['clean'], None), 'model.progressive.gt_sizes=[16,48]']
    assert main(['mm-train', *argv], prog='ramit') == 2
    assert capsys.readouterr().err.strip() == (
        'ramit mm-train: error: model.progressive: gt_sizes [16, 48]: each must be positive, a multiple of the scale '
        '1 and at most the GT patch the train pipeline delivers (32)')


@pytest.mark.parametrize('iters', [-1, 2.5, True])
def test_warm_start_length_must_be_a_whole_number(iters):
    with pytest.raises(ValueError, match=r'^WarmStartHook: iters must be a whole number of iterations >= 0, got '):
        WarmStartHook(iters=iters)
