"""`basicsr train` / `basicsr test`: published numbers, training, resume, NaN stop, torchrun on CPU, bad input."""
import copy
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ramit_cli.main import main
from ramit_plugin.archs import RAMiT

# ../shared/ramit_reference/README.md: Set5 PSNR-Y / SSIM-Y of the published checkpoints.
REFERENCE_SET5 = {
    ('RAMiT-1', 2): (38.184, 0.9612), ('RAMiT-1', 3): (34.618, 0.9292), ('RAMiT-1', 4): (32.537, 0.8987),
    ('RAMiT-slimSR', 2): (38.141, 0.9611), ('RAMiT-slimSR', 3): (34.595, 0.9289), ('RAMiT-slimSR', 4): (32.472, 0.8980),
}
LOSS_LINE = re.compile(r'iter:\s+(\d+), lr:\(([\d.e+-]+),\).*l_pix: ([\d.e+-]+)')


def test_basicsr_test_reproduces_the_published_set5_table(tmp_path, reference_dir, datasets_dir, options_file,
                                                          set5_options):
    files = [str(options_file(tmp_path / f'{v}_x{s}.yml', set5_options(v, s, datasets_dir, reference_dir / 'weights')))
             for v, s in REFERENCE_SET5]
    # One process for the six runs of `basicsr test` saves five interpreter and torch start-ups.
    driver = ('import sys; from ramit_cli.main import main; '
              "sys.exit(max(main(['test', '-opt', f], 'basicsr') for f in sys.argv[1:]))")
    # Two threads: this is the suite's one heavy inference job and CI has two cores.
    proc = subprocess.run([sys.executable, '-c', driver, *files], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS='2'), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = {}
    for metric, value, run in re.findall(r'# (psnr|ssim): ([\d.]+)\s+Best: [\d.]+ @ (\S+) iter', proc.stderr):
        measured.setdefault(run, {})[metric] = float(value)
    for (variant, scale), (psnr, ssim) in REFERENCE_SET5.items():
        got = measured[f'{variant}_x{scale}']
        assert abs(got['psnr'] - psnr) <= 0.01, (variant, scale, got)
        assert abs(got['ssim'] - ssim) <= 0.0005, (variant, scale, got)
    assert (tmp_path / 'results' / 'RAMiT-1_x2').is_dir()


def losses(log_text: str) -> dict:
    """iteration -> (lr, l_pix) from a BasicSR training log."""
    return {int(it): (float(lr), float(loss)) for it, lr, loss in LOSS_LINE.findall(log_text)}


def digest(path: Path) -> str:
    """SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_train_resume_nan_stop_and_existing_folder(tmp_path, sr_data, tiny_options, options_file, run_basicsr):
    # Uninterrupted: 20 iterations from LMDB, checkpoints every 10, validation every 10.
    full = options_file(tmp_path / 'full.yml', tiny_options(sr_data, name='full', total_iter=20))
    proc = run_basicsr('train', '-opt', str(full), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stderr
    curve = losses(log)
    assert sorted(curve) == [5, 10, 15, 20]
    assert curve[20][1] < 0.7 * curve[5][1]  # the loss falls
    assert log.count('Validation tinyval') == 3 and re.search(r'# psnr: \d+\.\d+', log)
    exp = tmp_path / 'experiments' / 'full'
    assert {p.name for p in (exp / 'models').iterdir()} == {'net_g_10.pth', 'net_g_20.pth', 'net_g_latest.pth'}
    assert {p.name for p in (exp / 'training_states').iterdir()} == {'10.state', '20.state'}

    # Interrupted after the iteration-10 save, then resumed with --auto_resume to the same length. The name is
    # taken by an earlier experiment: BasicSR moves that folder aside with a timestamp, losing nothing.
    cut_dir = tmp_path / 'experiments' / 'cut'
    (cut_dir / 'models').mkdir(parents=True)
    (cut_dir / 'models' / 'net_g_5.pth').write_bytes(b'earlier run')
    options_file(tmp_path / 'cut.yml', tiny_options(sr_data, name='cut', total_iter=10))
    assert run_basicsr('train', '-opt', 'cut.yml', cwd=tmp_path).returncode == 0
    archived, = (tmp_path / 'experiments').glob('cut_archived_*')
    assert [p.relative_to(archived) for p in archived.rglob('*') if p.is_file()] == [Path('models/net_g_5.pth')]
    assert (archived / 'models' / 'net_g_5.pth').read_bytes() == b'earlier run'
    proc = run_basicsr('train', '-opt', 'cut.yml', '--auto_resume', '--force_yml', 'train:total_iter=20',
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Resuming training from epoch: 4, iter: 10.' in proc.stderr
    resumed_curve = losses(proc.stderr)
    assert sorted(resumed_curve) == [15, 20]
    assert [resumed_curve[i][0] for i in (15, 20)] == [curve[i][0] for i in (15, 20)]  # same lr schedule
    a = torch.load(exp / 'training_states' / '20.state', weights_only=True)
    b = torch.load(cut_dir / 'training_states' / '20.state', weights_only=True)
    assert (a['iter'], a['schedulers']) == (b['iter'], b['schedulers'])
    assert a['optimizers'][0]['param_groups'] == b['optimizers'][0]['param_groups']
    steps = [{k: int(v['step']) for k, v in s['optimizers'][0]['state'].items()} for s in (a, b)]
    assert steps[0] == steps[1] and set(steps[0].values()) == {20}

    # A NaN loss stops the run with one line; the last good checkpoint is untouched and nothing new is written.
    before = {p.name: digest(p) for p in (cut_dir / 'models').iterdir()}
    proc = run_basicsr('train', '-opt', 'cut.yml', '--auto_resume', '--force_yml', 'train:total_iter=30',
                       'train:pixel_opt:loss_weight=!!float nan', cwd=tmp_path)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('basicsr train: error: training stopped at iter 21: loss l_pix is nan')
    assert 'net_g_20.pth' in last and 'Traceback' not in proc.stderr
    assert {p.name: digest(p) for p in (cut_dir / 'models').iterdir()} == before
    assert {p.name for p in (cut_dir / 'training_states').iterdir()} == {'10.state', '20.state'}


def test_torchrun_two_cpu_processes_with_warm_start_and_progressive(tmp_path, sr_data, tiny_options, options_file):
    torch.manual_seed(3)
    x2 = RAMiT(upscale=2, **{k: v for k, v in tiny_options(sr_data)['network_g'].items()
                             if k not in ('type', 'upscale')}).state_dict()
    torch.save(x2, tmp_path / 'x2.pth')
    opt = tiny_options(sr_data, name='ddp', total_iter=8, warm_start_iter=3,
                       progressive=dict(iters=[0, 6], gt_sizes=[16, 32], batch_sizes=[4, 2]))
    opt['path']['pretrain_network_g'] = str(tmp_path / 'x2.pth')
    opt['logger'].update(print_freq=1, save_checkpoint_freq=3)
    opt['val']['val_freq'] = 100
    options_file(tmp_path / 'ddp.yml', opt)
    script = Path(sys.executable).parent / 'basicsr'
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                           str(script), 'train', '-opt', 'ddp.yml', '--launcher', 'pytorch'], cwd=tmp_path,
                          capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stderr
    # 8 images, 4 per process and 2 processes: 1 iteration per epoch only if both ranks share the data.
    assert 'World size (gpu number): 2' in log and 'Require iter number per epoch: 1' in log
    assert 'Network: DistributedDataParallel - RAMiT' in log
    assert 'progressive: iter 1 -> patch 16, batch 4' in log and 'progressive: iter 6 -> patch 32, batch 2' in log
    assert 'warm start: iter 4: all parameters train from now on' in log
    models = tmp_path / 'experiments' / 'ddp' / 'models'
    at3 = torch.load(models / 'net_g_3.pth', weights_only=True)['params']
    at6 = torch.load(models / 'net_g_6.pth', weights_only=True)['params']
    body = [k for k in x2 if not k.startswith('to_target.')]
    assert all(torch.equal(at3[k], x2[k]) for k in body)
    assert not any(torch.equal(at3[k], x2[k]) for k in x2 if k.startswith('to_target.'))
    assert all(not torch.equal(at6[k], x2[k]) for k in body if k.endswith('weight'))


def test_help_explains_the_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(['train', '--help'], 'basicsr')
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for text in ('-opt X.yml', '--launcher {none,pytorch,slurm}', '--auto_resume', '--debug', '--force_yml',
                 '--local_rank LOCAL_RANK, --local-rank LOCAL_RANK', 'torchrun --nproc_per_node=2'):
        assert text in out


def damaged_lmdb(data: dict, tmp: Path, damage) -> Path:
    """A copy of the tiny LR LMDB with ``damage(folder)`` done to it."""
    folder = tmp / 'LR.lmdb'
    shutil.copytree(data['lr_lmdb'], folder)
    damage(folder)
    return folder


def truncate(path: Path, size: int) -> None:
    with open(path, 'r+b') as f:
        f.truncate(size)


def train_set(**changes):
    """A BAD_OPTIONS mutation setting keys of datasets:train."""
    return lambda o, d, t: o['datasets']['train'].update(changes)


BAD_OPTIONS = {
    'missing dataroot': (lambda o, d, t: o['datasets']['train'].update(dataroot_gt=None),
                         'datasets:train:dataroot_gt: missing'),
    'absent dataroot': (lambda o, d, t: o['datasets']['val'].update(dataroot_lq='nowhere/LR'),
                        'datasets:val:dataroot_lq: nowhere/LR does not exist'),
    'empty dataroot': (lambda o, d, t: (t / 'empty').mkdir() or o['datasets']['val'].update(
        dataroot_gt=str(t / 'empty')), 'contains no images'),
    'lmdb without meta_info': (lambda o, d, t: (shutil.copytree(d['lr_lmdb'], t / 'LR.lmdb'),
                                                os.remove(t / 'LR.lmdb' / 'meta_info.txt'),
                                                o['datasets']['train'].update(dataroot_lq=str(t / 'LR.lmdb'))),
                               'is not a complete LMDB: meta_info.txt is missing'),
    'lq/gt size mismatch (lmdb)': (lambda o, d, t: o['datasets']['train'].update(dataroot_lq=str(d['hr_lmdb'])),
                                   'datasets:train: GT 0000 is 48x48 but LQ 0000 is 48x48: not x2'),
    'lq/gt size mismatch (folder)': (lambda o, d, t: o['datasets']['val'].update(dataroot_lq=str(d['hr'])),
                                     '0000.png is 48x48: not x2'),
    'unknown network type': (lambda o, d, t: o['network_g'].update(type='RAMIT'),
                             "network_g:type: unknown network 'RAMIT'; valid: "),
    'unknown variant': (lambda o, d, t: o['network_g'].update(variant='RAMiT-2'),
                        "unknown variant 'RAMiT-2'; valid variants: RAMiT, RAMiT-1, RAMiT-slimSR, RAMiT-slimLLE"),
    'unknown loss': (lambda o, d, t: o['train'].update(fft_opt=dict(type='FourierLoss')),
                     "train:fft_opt:type: unknown loss 'FourierLoss'; valid: "),
    'unknown amp': (lambda o, d, t: o['train'].update(amp='fp8'),
                    "train:amp: 'fp8' is not supported; valid: bf16, fp16 (or leave it out)"),
    'unknown compile mode': (lambda o, d, t: o['train'].update(compile='fastest'),
                             "train:compile: 'fastest' is not valid; use true, false, one of auto, default, "),
    'warm start without pretrain': (lambda o, d, t: o['train'].update(warm_start_iter=10),
                                    'train:warm_start_iter: needs path:pretrain_network_g'),
    'bad progressive': (lambda o, d, t: o['train'].update(progressive=dict(iters=[0, 5], gt_sizes=[16, 64],
                                                                            batch_sizes=[4, 2])),
                        'train:progressive: gt_sizes [16, 64]: each must be positive'),
    'checkpoint of another scale': (lambda o, d, t: (torch.save(RAMiT(upscale=3, **{
        k: v for k, v in o['network_g'].items() if k not in ('type', 'upscale')}).state_dict(), t / 'x3.pth'),
        o['path'].update(pretrain_network_g=str(t / 'x3.pth'))), 'x3.pth: checkpoint does not fit: it looks like'),
    # Numbers basicsr would fail on mid-run (or silently accept: total_iter 0 saved an untrained network).
    'batch size not a number': (train_set(batch_size_per_gpu='eight'),
                                "datasets:train:batch_size_per_gpu: 'eight' must be a whole number of at least 1"),
    'batch size 0': (train_set(batch_size_per_gpu=0),
                     'datasets:train:batch_size_per_gpu: 0 must be a whole number of at least 1'),
    'negative workers': (train_set(num_worker_per_gpu=-1),
                         'datasets:train:num_worker_per_gpu: -1 must be a whole number of at least 0'),
    'no iterations': (lambda o, d, t: o['train'].update(total_iter=0),
                      'train:total_iter: 0 must be a whole number of at least 1'),
    'negative iterations': (lambda o, d, t: o['train'].update(total_iter=-5),
                            'train:total_iter: -5 must be a whole number of at least 1'),
    'infinite iterations': (lambda o, d, t: o['train'].update(total_iter=float('inf')),
                            'train:total_iter: inf must be a whole number of at least 1'),
    'missing meta_info_file': (lambda o, d, t: o['datasets']['val'].update(meta_info_file=str(t / 'nope.txt')),
                               'nope.txt: No such file or directory'),
    'checkpoint every 0 iterations': (lambda o, d, t: o['logger'].update(save_checkpoint_freq=0),
                                      'logger:save_checkpoint_freq: 0 must be a whole number of at least 1'),
    'learning rate not a number': (lambda o, d, t: o['train']['optim_g'].update(lr='fast'),
                                   "train:optim_g:lr: 'fast' must be a positive number (e.g. 4e-4)"),
    'patch not a multiple of the scale': (train_set(gt_size=63), 'datasets:train:gt_size: 63 is not a multiple of the '
                                                                 'scale 2 (the LQ patch is gt_size / scale pixels), '
                                                                 'e.g. 62'),
    'scale and upscale differ': (lambda o, d, t: o['network_g'].update(upscale=3),
                                 'scale: 2 but network_g:upscale is 3: the data and the network must have the same '
                                 'scale'),
    'dataroot is a file': (lambda o, d, t: o['datasets']['val'].update(dataroot_gt=str(d['hr'] / '0000.png')),
                           '0000.png is a file; a data root is a folder of images or an LMDB folder'),
    'only dataroot_lq': (lambda o, d, t: o['datasets']['train'].pop('dataroot_gt'),
                         'datasets:train:dataroot_gt: missing (PairedImageDataset reads dataroot_gt and dataroot_lq)'),
    # Damaged LMDBs: reading a truncated data.mdb would kill the run with SIGBUS, without a word.
    'truncated data.mdb': (lambda o, d, t: train_set(dataroot_lq=str(damaged_lmdb(
        d, t, lambda f: truncate(f / 'data.mdb', 20000))))(o, d, t), 'LR.lmdb/data.mdb is truncated: 20000 bytes, but '
                                                                     'the database uses '),
    'empty data.mdb': (lambda o, d, t: train_set(dataroot_lq=str(damaged_lmdb(
        d, t, lambda f: truncate(f / 'data.mdb', 0))))(o, d, t), 'LR.lmdb/data.mdb is empty (0 bytes): recreate the '
                                                                 'LMDB with `ramit make-lmdb`'),
    'meta_info key missing from the LMDB': (lambda o, d, t: train_set(dataroot_lq=str(damaged_lmdb(
        d, t, lambda f: (f / 'meta_info.txt').write_text((f / 'meta_info.txt').read_text()
                                                         + '0099.png (24,24,3) 1\n'))))(o, d, t),
        'LR.lmdb/meta_info.txt lists 1 key(s) that '),
}


@pytest.mark.parametrize('case', list(BAD_OPTIONS))
def test_bad_options_are_one_line_errors_before_anything_is_written(case, tmp_path, sr_data, tiny_options,
                                                                    options_file, capsys, monkeypatch):
    mutate, expected = BAD_OPTIONS[case]
    opt = copy.deepcopy(tiny_options(sr_data))
    mutate(opt, sr_data, tmp_path)
    options_file(tmp_path / 'bad.yml', opt)
    monkeypatch.chdir(tmp_path)
    assert main(['train', '-opt', 'bad.yml'], 'basicsr') == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('basicsr train: error: '), err
    assert expected in err, err
    assert not (tmp_path / 'experiments').exists()


@pytest.mark.parametrize('text, expected', [
    ('name: x\nmodel_type: RAMiTModel\ndatasets: [1, 2\nnum_gpu: 0\n', 'bad.yml, line 4, column 8: YAML syntax error'),
    ('name: x\nmodel_type: !!python/object/apply:os.system ["touch pwned"]\n',
     'bad.yml, line 2: refusing YAML tag tag:yaml.org,2002:python/object/apply:os.system: option files are read '
     'with a safe loader'),
    ('- just\n- a list\n', 'bad.yml: not an option file'),
])
def test_unsafe_or_broken_yaml_is_refused_with_file_and_line(text, expected, tmp_path, capsys, monkeypatch):
    (tmp_path / 'bad.yml').write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(['train', '-opt', 'bad.yml'], 'basicsr') == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and expected in err, err
    assert not (tmp_path / 'pwned').exists()


SR_FILES = [f'{kind}_{variant}_SRx{scale}.yml' for kind in ('train', 'test')
            for variant in ('RAMiT', 'RAMiT-1', 'RAMiT-slimSR') for scale in (2, 3, 4)]


@pytest.mark.parametrize('name', SR_FILES)
def test_shipped_sr_option_files_follow_the_paper_recipe(name):
    from ramit_plugin.option_checks import load_options
    from ramit_plugin.resources import option_file
    opt = load_options(str(option_file(name)))
    variant, scale = re.match(r'\w+?_(.+)_SRx(\d)\.yml', name).groups()
    scale = int(scale)
    assert opt['model_type'] == 'RAMiTModel' and opt['scale'] == scale and opt['num_gpu'] == 'auto'
    assert opt['network_g'] == dict(type='RAMiT', variant=variant, task='sr', upscale=scale)
    RAMiT(**{k: v for k, v in opt['network_g'].items() if k != 'type'})
    metrics = opt['val']['metrics']
    assert {m['crop_border'] for m in metrics.values()} == {scale} and all(m['test_y_channel'] for m in
                                                                             metrics.values())
    if name.startswith('test'):
        sets = [d['name'] for d in opt['datasets'].values()]
        assert sets == ['Set5', 'Set14', 'B100', 'Urban100', 'Manga109']
        assert opt['path']['pretrain_network_g'] == f'pretrained/{variant}_X{scale}.pth'
        return
    train, data = opt['train'], opt['datasets']['train']
    assert data['dataroot_gt'] == 'datasets/DIV2K/DIV2K_train_HR_sub.lmdb'
    assert data['dataroot_lq'] == f'datasets/DIV2K/DIV2K_train_LR_bicubic_X{scale}_sub.lmdb'
    assert (data['gt_size'], data['batch_size_per_gpu']) == (64 * scale, 32)
    assert opt['datasets']['val']['dataroot_lq'] == f'datasets/Set5/LR_bicubic/X{scale}'
    assert (train['optim_g']['type'], train['optim_g']['lr'], train['pixel_opt']['type']) == ('Adam', 4e-4, 'L1Loss')
    assert opt['logger']['use_tb_logger'] is True
    if scale == 2:
        assert (train['total_iter'], train['warmup_iter']) == (500000, 20000)
        assert train['scheduler']['milestones'] == [200000, 300000, 400000, 425000, 450000, 475000]
        assert 'warm_start_iter' not in train
    else:
        assert (train['total_iter'], train['warmup_iter'], train['warm_start_iter']) == (300000, 10000, 50000)
        assert train['scheduler']['milestones'] == [50000, 100000, 150000, 175000, 200000, 225000]
        assert opt['path']['pretrain_network_g'] == f'experiments/train_{variant}_SRx2/models/net_g_latest.pth'


@pytest.mark.parametrize('entry, expected', [
    # Values are YAML, read with the safe loader: what basicsr (and this plugin before) passed to eval() stays text.
    ('name=[__import__("os").system("touch pwned")]',
     'bad.yml: name: [\'__import__("os").system("touch pwned")\'] must be a folder name'),
    ('train:scheduler:milestones=[__import__("os").system("touch pwned")]',
     'bad.yml: train:scheduler:milestones: [\'__import__("os").system("touch pwned")\'] must be a list of iteration '
     'numbers'),
    # basicsr built opt["..."]...=value as Python source for exec(); keys are now only looked up.
    ('name"]+__import__("os").system("touch pwned")+opt["x=1',
     '--force_yml \'name"]+__import__("os").system("touch pwned")+opt["x=1\': name"]+__import__("os").system("touch '
     'pwned")+opt["x is not an option in bad.yml'),
    ('train:total_itr=2', "--force_yml 'train:total_itr=2': train:total_itr is not an option in bad.yml (did you mean "
                          'train:total_iter?); --force_yml changes options the file has (add new ones to the file)'),
    ('train:total_iter=-3', 'bad.yml: train:total_iter: -3 must be a whole number of at least 1'),
    ('train:optim_g:lr=!!python/object/apply:os.system ["touch pwned"]',
     "--force_yml 'train:optim_g:lr=!!python/object/apply:os.system [\"touch pwned\"]': cannot read the value as YAML"),
])
def test_force_yml_values_are_read_as_yaml_and_keys_must_exist(entry, expected, tmp_path, sr_data, tiny_options,
                                                               options_file, capsys, monkeypatch):
    options_file(tmp_path / 'bad.yml', tiny_options(sr_data))
    monkeypatch.chdir(tmp_path)
    assert main(['train', '-opt', 'bad.yml', '--force_yml', entry], 'basicsr') == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('basicsr train: error: ') and expected in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.yml']  # no pwned, no experiments/


def test_exponent_floats_without_a_dot_are_numbers(tmp_path, sr_data, tiny_options, options_file):
    """YAML 1.1 (PyYAML) reads `lr: 1e-3` as the string '1e-3'; option files and --force_yml read it as 0.001."""
    from ramit_plugin.option_checks import apply_force_yml, load_options
    (tmp_path / 'f.yml').write_text('lr: 1e-3\nbig: 5E+5\ndotted: 2.0e-4\nname: 1e-3_run\nversion: "1e3"\n')
    assert load_options(str(tmp_path / 'f.yml')) == dict(lr=0.001, big=500000.0, dotted=0.0002, name='1e-3_run',
                                                         version='1e3')
    opt = tiny_options(sr_data)
    apply_force_yml(opt, ['train:optim_g:lr=1e-3', 'train:ema_decay=0.999', 'network_g:mlp_ratio=2',
                          'path:pretrain_network_g=None'], 'x.yml')
    assert (opt['train']['optim_g']['lr'], opt['train']['ema_decay'], opt['network_g']['mlp_ratio']) == (
        0.001, 0.999, 2)
    assert opt['path']['pretrain_network_g'] is None


def test_unknown_metric_in_a_test_file(tmp_path, sr_data, tiny_options, options_file, capsys, monkeypatch):
    opt = tiny_options(sr_data)
    opt.pop('train')
    opt['datasets'] = dict(test_1=opt['datasets']['val'])
    opt['val'] = dict(save_img=False, metrics=dict(psnr=dict(type='calculate_pnsr', crop_border=2)))
    options_file(tmp_path / 'bad.yml', opt)
    monkeypatch.chdir(tmp_path)
    assert main(['test', '-opt', 'bad.yml'], 'basicsr') == 2
    err = capsys.readouterr().err
    assert err.startswith("basicsr test: error: bad.yml: val:metrics:psnr:type: unknown metric 'calculate_pnsr'; "
                          'valid: calculate_niqe, calculate_psnr, ') and err.count('\n') == 1, err
    assert not (tmp_path / 'results').exists()
