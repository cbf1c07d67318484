"""Option files of `basicsr train` / `basicsr test` (ramit_cli.options, ramit_cli.prechecks): read safely, checked
against the schema and the data on disk before torch or basicsr start, refused in one line naming the file and key,
with nothing created. The commands run in this process (a precheck needs no real process)."""
import copy
import os
import re
import shutil
import time
from pathlib import Path
from typing import Callable

import pytest

from ramit_cli.options import (Loss, Strict, apply_force_yml, check_network, check_schema, load_options,
                               options_reference)
from ramit_plugin.resources import option_file, options_dir
from tests.ramit_plugin.conftest import outputs

REPO = Path(__file__).resolve().parents[2]


def damaged_lmdb(data: dict, tmp: Path, damage: Callable[[Path], None]) -> Path:
    """A copy of the tiny LR LMDB with ``damage(folder)`` done to it."""
    folder = tmp / 'LR.lmdb'
    shutil.copytree(data['lr_lmdb'], folder)
    damage(folder)
    return folder


def truncate(path: Path, size: int) -> None:
    """Cut the file ``path`` to ``size`` bytes."""
    with open(path, 'r+b') as f:
        f.truncate(size)


def train_set(**changes) -> Callable:
    """A BAD_OPTIONS mutation setting keys of datasets:train."""
    return lambda o, d, t: o['datasets']['train'].update(changes)


def section(name: str, **changes) -> Callable:
    """A BAD_OPTIONS mutation setting keys of a top-level section (or of the top level: name '')."""
    return lambda o, d, t: (o[name] if name else o).update(changes)


BAD_OPTIONS = {
    'missing dataroot': (train_set(dataroot_gt=None), 'bad.yml: datasets:train:dataroot_gt: missing'),
    'absent dataroot': (lambda o, d, t: o['datasets']['val'].update(dataroot_lq='nowhere/LR'),
                        'bad.yml: datasets:val:dataroot_lq: nowhere/LR does not exist'),
    'empty dataroot': (lambda o, d, t: (t / 'empty').mkdir() or o['datasets']['val'].update(
        dataroot_gt=str(t / 'empty')), 'empty contains no images'),
    'lmdb without meta_info': (lambda o, d, t: train_set(dataroot_lq=str(damaged_lmdb(
        d, t, lambda f: os.remove(f / 'meta_info.txt'))))(o, d, t), 'is not a complete LMDB: meta_info.txt is missing'),
    'lq/gt size mismatch (lmdb)': (lambda o, d, t: o['datasets']['train'].update(dataroot_lq=str(d['hr_lmdb'])),
                                   'bad.yml: datasets:train: GT 0000 is 48x48 but LQ 0000 is 48x48: not x2'),
    'lq/gt size mismatch (folder)': (lambda o, d, t: o['datasets']['val'].update(dataroot_lq=str(d['hr'])),
                                     '0000.png is 48x48: not x2'),
    'unknown network type': (lambda o, d, t: o['network_g'].update(type='RAMIT'),
                             "bad.yml: network_g:type: unknown arch 'RAMIT'; valid: "),
    'unknown variant': (lambda o, d, t: o['network_g'].update(variant='RAMiT-2'),
                        "unknown variant 'RAMiT-2'; valid variants: RAMiT, RAMiT-1, RAMiT-slimSR, RAMiT-slimLLE"),
    'unknown loss': (section('train', fft_opt=dict(type='FourierLoss')),
                     "bad.yml: train:fft_opt:type: unknown loss 'FourierLoss'; valid: "),
    'unknown amp': (section('train', amp='fp8'), "bad.yml: train:amp: 'fp8' is not valid; valid: bf16, fp16, fp32"),
    'unknown compile mode': (section('train', compile='fastest'),
                             "bad.yml: train:compile: 'fastest' is not valid; valid: auto, default, "),
    'unknown optimizer': (lambda o, d, t: o['train']['optim_g'].update(type='SGD'),
                          "bad.yml: train:optim_g:type: 'SGD' is not valid; valid: Adam, AdamW"),
    'warm start without pretrain': (section('train', warm_start_iter=10),
                                    'bad.yml: train:warm_start_iter: needs path:pretrain_network_g'),
    # Unknown keys: a typo is refused with the closest known key (basicsr ignores it silently).
    'unknown key in train': (section('train', total_itr=5),
                             'bad.yml: train:total_itr: not an option (did you mean total_iter?)'),
    'unknown key in logger': (section('logger', print_frequency=5),
                              'bad.yml: logger:print_frequency: not an option (did you mean print_freq?)'),
    'unknown top-level key': (section('', modle_type='RAMiTModel'),
                              'bad.yml: modle_type: not an option (did you mean model_type?)'),
    'unknown dataset key': (train_set(gt_sise=32), 'bad.yml: datasets:train:gt_sise: not an option (did you mean '
                                                   'gt_size?)'),
    # Types and ranges basicsr would fail on mid-run (or silently accept: total_iter 0 saved an untrained network).
    'batch size not a number': (train_set(batch_size_per_gpu='eight'),
                                "bad.yml: datasets:train:batch_size_per_gpu: expected int | null; found 'eight'"),
    'batch size 0': (train_set(batch_size_per_gpu=0),
                     'bad.yml: datasets:train:batch_size_per_gpu: expected int >= 1; found 0'),
    'negative workers': (train_set(num_worker_per_gpu=-1),
                         'bad.yml: datasets:train:num_worker_per_gpu: expected int >= 0; found -1'),
    'no iterations': (section('train', total_iter=0), 'bad.yml: train:total_iter: expected int >= 1; found 0'),
    'negative iterations': (section('train', total_iter=-5), 'bad.yml: train:total_iter: expected int >= 1; found -5'),
    'infinite iterations': (section('train', total_iter=float('inf')), 'bad.yml: train:total_iter: expected int; '
                                                                       'found inf'),
    'absurd iterations': (section('train', total_iter=1e30), 'bad.yml: train:total_iter: expected int; found 1e+30'),
    'seed not a number': (section('', manual_seed='abc'), "bad.yml: manual_seed: expected int | null; found 'abc'"),
    'missing meta_info_file': (lambda o, d, t: o['datasets']['val'].update(meta_info_file=str(t / 'nope.txt')),
                               'bad.yml: datasets:val:meta_info_file: '),
    'checkpoint every 0 iterations': (section('logger', save_checkpoint_freq=0),
                                      'bad.yml: logger:save_checkpoint_freq: expected int >= 1; found 0'),
    'learning rate not a number': (lambda o, d, t: o['train']['optim_g'].update(lr='fast'),
                                   "bad.yml: train:optim_g:lr: expected float; found 'fast'"),
    'patch not a multiple of the scale': (train_set(gt_size=63), 'datasets:train:gt_size: 63 is not a multiple of the '
                                                                 'scale 2 (the LQ patch is gt_size / scale pixels), '
                                                                 'e.g. 62'),
    'scale and upscale differ': (lambda o, d, t: o['network_g'].update(upscale=3),
                                 'bad.yml: scale: 2 but network_g:upscale is 3: the data and the network must have '
                                 'the same scale'),
    'dataroot is a file': (lambda o, d, t: o['datasets']['val'].update(dataroot_gt=str(d['hr'] / '0000.png')),
                           '0000.png is a file; a data root is a folder of images or an LMDB folder'),
    'only dataroot_lq': (lambda o, d, t: o['datasets']['train'].pop('dataroot_gt'),
                         'datasets:train:dataroot_gt: missing (PairedImageDataset reads dataroot_gt and dataroot_lq)'),
    'absent pretrain_network_g': (lambda o, d, t: o['path'].update(pretrain_network_g=str(t / 'none.pth')),
                                  'bad.yml: path:pretrain_network_g: '),
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


def refused(capsys, tmp_path: Path, argv: list, prog: str = 'basicsr train') -> str:
    """Run `basicsr ARGV` in ``tmp_path`` (this process); assert it was refused with exit 2 in exactly one line and
    created nothing; return that line."""
    from ramit_cli.main import main

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main(argv, 'basicsr')
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.err.count('\n') == 1 and captured.err.startswith(f'{prog}: error: '), captured.err
    assert outputs(tmp_path) == [] and not (tmp_path / 'pwned').exists()
    return captured.err.rstrip('\n')


@pytest.mark.parametrize('case', list(BAD_OPTIONS))
def test_bad_options_are_one_line_errors_before_anything_is_written(case, tmp_path, sr_data, tiny_options,
                                                                    options_file, capsys):
    mutate, expected = BAD_OPTIONS[case]
    opt = copy.deepcopy(tiny_options(sr_data))
    mutate(opt, sr_data, tmp_path)
    options_file(tmp_path / 'bad.yml', opt)
    assert expected in refused(capsys, tmp_path, ['train', '-opt', 'bad.yml'])
    assert not (tmp_path / 'experiments').exists()  # refused before basicsr was imported: not even the lock


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """YAML whose ``levels`` anchors each list the previous one ``width`` times (9**9 values once expanded)."""
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return '\n'.join(lines) + '\n'


@pytest.mark.parametrize('text, expected', [
    ('name: x\nmodel_type: RAMiTModel\ndatasets: [1, 2\nnum_gpu: 0\n', 'bad.yml, line 4, column 8: YAML syntax error'),
    ('name: x\nmodel_type: !!python/object/apply:os.system ["touch pwned"]\n',
     'bad.yml, line 2: refusing YAML tag tag:yaml.org,2002:python/object/apply:os.system: option files are read '
     'with a safe loader'),
    ('- just\n- a list\n', 'bad.yml: not an option file'),
    ('name: x\nscale: 2\nmodel_type: RAMiTModel\nscale: 3\n',
     "bad.yml, line 4: duplicate key 'scale' (first on line 2)"),
    ('name: x\ntrain:\n  total_iter: 5\n  optim_g: {}\n  total_iter: 6\n',
     "bad.yml, line 5: duplicate key 'total_iter' (first on line 3)"),
    (alias_bomb(), 'bad.yml: expands to more than 100,000 values (YAML aliases repeating aliases); not an option file'),
    (b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR' + bytes(range(256)), 'bad.yml: not a text file'),
    (b'name: x\x00\nscale: 2\n', 'bad.yml: not a text file'),
], ids=['syntax', 'python tag', 'not a mapping', 'duplicate key', 'duplicate nested key', 'alias bomb', 'binary',
        'nul byte'])
def test_unsafe_broken_or_binary_yaml_is_refused_with_file_and_line(text, expected, tmp_path, capsys):
    (tmp_path / 'bad.yml').write_bytes(text if isinstance(text, bytes) else text.encode())
    start = time.perf_counter()
    assert expected in refused(capsys, tmp_path, ['train', '-opt', 'bad.yml'])
    assert time.perf_counter() - start < 1.0  # the alias bomb (387 million values) is not expanded


@pytest.mark.parametrize('entry, expected', [
    # Values are YAML, read with the safe loader: what basicsr passed to eval() stays text.
    ('name=[__import__("os").system("touch pwned")]',
     'bad.yml: name: expected str; found [\'__import__("os").system("touch pwned")\']'),
    ('train:scheduler:milestones=[__import__("os").system("touch pwned")]',
     'bad.yml: train:scheduler:milestones:0: expected int; found \'__import__'),
    # basicsr built opt["..."]...=value as Python source for exec(); keys are now only looked up.
    ('name"]+__import__("os").system("touch pwned")+opt["x=1',
     'bad.yml: name"]+__import__("os").system("touch pwned")+opt["x: not an option'),
    ('train:optim_g:lr=!!python/object/apply:os.system ["touch pwned"]',
     "--force_yml 'train:optim_g:lr=!!python/object/apply:os.system [\"touch pwned\"]': cannot read the value as YAML"),
    # The schema checks what --force_yml made: unknown keys, types and ranges, named as in the file.
    ('train:total_itr=2', 'bad.yml: train:total_itr: not an option (did you mean total_iter?)'),
    ('network_g:mlp_ratio=2', 'bad.yml: network_g:mlp_ratio: not an option; valid: type, variant, task, '),
    ('train:total_iter=-3', 'bad.yml: train:total_iter: expected int >= 1; found -3'),
    ('train:total_iter=1e30', 'bad.yml: train:total_iter: expected int; found 1e+30'),
    ('manual_seed=abc', "bad.yml: manual_seed: expected int | null; found 'abc'"),
    ('datasets:train:batch_size_per_gpu=0', 'bad.yml: datasets:train:batch_size_per_gpu: expected int >= 1; found 0'),
    ('datasets:train:name=[a, b]', "bad.yml: datasets:train:name: expected str; found ['a', 'b']"),
    ('train:optim_g=5', 'bad.yml: train:optim_g: expected object; found 5'),
    ('nosuch:key=1', "--force_yml 'nosuch:key=1': nosuch is not in bad.yml"),
    ('train:total_iter', "--force_yml 'train:total_iter': expected KEY:SUB=VALUE (one \"=\")"),
])
def test_force_yml_values_are_read_as_yaml_and_checked_by_the_schema(entry, expected, tmp_path, sr_data,
                                                                     tiny_options, options_file, capsys):
    options_file(tmp_path / 'bad.yml', tiny_options(sr_data))
    assert expected in refused(capsys, tmp_path, ['train', '-opt', 'bad.yml', '--force_yml', entry])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.yml']  # no pwned, no experiments/


def test_exponent_floats_without_a_dot_are_numbers(tmp_path, sr_data, tiny_options):
    """YAML 1.1 (PyYAML) reads `lr: 1e-3` as the string '1e-3'; option files and --force_yml read it as 0.001."""
    (tmp_path / 'f.yml').write_text('lr: 1e-3\nbig: 5E+5\ndotted: 2.0e-4\nname: 1e-3_run\nversion: "1e3"\n')
    assert load_options(str(tmp_path / 'f.yml')) == dict(lr=0.001, big=500000.0, dotted=0.0002, name='1e-3_run',
                                                         version='1e3')
    opt = tiny_options(sr_data)
    apply_force_yml(opt, ['train:optim_g:lr=1e-3', 'train:ema_decay=0.999', 'network_g:hidden_ratio=2',
                          'path:pretrain_network_g=None'], 'x.yml')
    assert (opt['train']['optim_g']['lr'], opt['train']['ema_decay'], opt['network_g']['hidden_ratio']) == (
        0.001, 0.999, 2)
    assert opt['path']['pretrain_network_g'] is None
    check_schema(opt, 'x.yml', is_train=True)


def test_launcher_pytorch_without_torchrun_is_one_line_naming_rank(tmp_path, sr_data, tiny_options, options_file,
                                                                   capsys, monkeypatch):
    for var in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(var, raising=False)
    options_file(tmp_path / 'x.yml', tiny_options(sr_data))
    line = refused(capsys, tmp_path, ['train', '-opt', 'x.yml', '--launcher', 'pytorch'])
    assert line.startswith('basicsr train: error: --launcher pytorch: RANK is not set') and 'torchrun' in line
    assert not (tmp_path / 'experiments').exists()


def test_unknown_metric_in_a_test_file(tmp_path, sr_data, tiny_options, options_file, capsys):
    opt = tiny_options(sr_data)
    opt.pop('train')
    opt['datasets'] = dict(test_1=opt['datasets']['val'])
    opt['val'] = dict(save_img=False, metrics=dict(psnr=dict(type='calculate_pnsr', crop_border=2)))
    options_file(tmp_path / 'bad.yml', opt)
    line = refused(capsys, tmp_path, ['test', '-opt', 'bad.yml'], prog='basicsr test')
    assert line == ("basicsr test: error: bad.yml: val:metrics:psnr:type: 'calculate_pnsr' is not valid; valid: "
                    'calculate_niqe, calculate_psnr, calculate_ssim')


SHIPPED = sorted(p.name for p in options_dir().glob('*.yml'))


def test_every_shipped_option_file_fits_the_schema():
    assert len(SHIPPED) == 29
    for name in SHIPPED:
        opt = load_options(str(option_file(name)))
        check_schema(opt, name, is_train=not name.startswith('test_'))
        check_network(opt, name)


SR_FILES = [f'{kind}_{variant}_SRx{scale}.yml' for kind in ('train', 'test')
            for variant in ('RAMiT', 'RAMiT-1', 'RAMiT-slimSR') for scale in (2, 3, 4)]


@pytest.mark.parametrize('name', SR_FILES)
def test_shipped_sr_option_files_follow_the_paper_recipe(name):
    from ramit.network import RAMiT

    opt = load_options(str(option_file(name)))
    variant, scale = re.match(r'\w+?_(.+)_SRx(\d)\.yml', name).groups()
    scale = int(scale)
    assert opt['model_type'] == 'RAMiTModel' and opt['scale'] == scale and opt['num_gpu'] == 'auto'
    assert opt['network_g'] == dict(type='RAMiT', variant=variant, task='sr', upscale=scale)
    RAMiT(**{k: v for k, v in opt['network_g'].items() if k != 'type'})
    metrics = opt['val']['metrics']
    assert {m['crop_border'] for m in metrics.values()} == {scale}
    assert all(m['test_y_channel'] for m in metrics.values())
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


def schema_sections() -> list:
    """Every section of the schema: the msgspec structs an option file's mappings are checked against."""
    found, stack = [], [Loss, *Strict.__subclasses__()]
    while stack:
        struct = stack.pop()
        if struct not in found:
            found.append(struct)
            stack.extend(struct.__subclasses__())
    return [s for s in found if s.__name__ != 'LenientDataset']


def test_options_reference_documents_every_section_and_key():
    reference = options_reference()
    for struct in schema_sections():
        doc = ' '.join(struct.__doc__.split())
        assert f'\n{doc}\n' in reference, f'{struct.__name__} ({doc!r}) is not in options_reference()'
        for field in struct.__struct_fields__:
            assert f'| `{field}` |' in reference, f'{struct.__name__}.{field}'


def test_docs_options_md_is_the_options_reference():
    docs = REPO / 'docs' / 'options.md'
    if not docs.is_file():
        pytest.skip('docs/options.md does not exist yet (generate it from ramit_cli.options.options_reference())')
    assert docs.read_text().rstrip('\n') == options_reference().rstrip('\n'), \
        'docs/options.md differs from ramit_cli.options.options_reference(): regenerate it'
