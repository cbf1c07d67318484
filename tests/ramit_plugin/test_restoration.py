"""`basicsr train/test` with the denoising, low-light and deraining option files (options/*_{CDN,GDN,LLE,DR}.yml),
run in this process.

Also `ramit mm-test` with the mmengine colour-denoising config against `basicsr test` on the same images.
"""
import re
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import pytest
import yaml

import ramit_plugin  # noqa: F401  (torchvision alias before basicsr)
from basicsr.metrics import calculate_psnr
from basicsr.utils import tensor2img
from ramit_cli.main import main
from ramit_cli.options import load_options
from ramit_plugin.data import NoisyImageDataset
from ramit_plugin.resources import option_file
from tests.ramit_plugin.conftest import last_line

# Small enough for 2 CPU iterations in seconds; fuse_expand_groups=1 because the variants' group counts do not
# divide dim 16's MobiVari widths.
TINY = ['network_g:dim=16', 'network_g:depths=[1,1,1,1]', 'network_g:num_heads=[2,2,2,2]', 'network_g:window_size=4',
        'network_g:fuse_expand_groups=1']
# Two iterations through both progressive stages, then validation, with the option file's own structure.
SHORT = ['datasets:train:num_worker_per_gpu=0', 'datasets:train:batch_size_per_gpu=2', 'datasets:train:gt_size=32',
         'train:progressive:iters=[0,2]', 'train:progressive:gt_sizes=[16,32]', 'train:progressive:batch_sizes=[2,1]',
         'train:total_iter=2', 'val:val_freq=2', 'logger:print_freq=1', 'logger:save_checkpoint_freq=2',
         'logger:use_tb_logger=false']


def photo(index: int, height: int, width: int) -> np.ndarray:
    """A BGR uint8 crop of one of scikit-image's bundled photos (real texture, no download)."""
    from skimage import data
    img = [data.astronaut, data.coffee, data.chelsea, data.rocket][index % 4]()
    top, left = 40 + 17 * index, 60 + 23 * index
    return np.ascontiguousarray(img[top:top + height, left:left + width, ::-1])


def darken(img: np.ndarray) -> np.ndarray:
    """A low-light version of a photo: gamma 2.2 then 40% exposure."""
    return np.round(255 * 0.4 * (img / 255.0) ** 2.2).astype(np.uint8)


def write_images(folder: Path, images: Dict[str, np.ndarray]) -> Path:
    """Write {file name: BGR image} into ``folder`` (created) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, img in images.items():
        cv2.imwrite(str(folder / name), img)
    return folder


def log_metrics(log_dir: Path) -> Dict[str, Dict[str, float]]:
    """{dataset: {metric: value}} from the basicsr log in ``log_dir`` (its 'Validation <name>' blocks)."""
    text = next(log_dir.glob('*.log')).read_text()
    results = {}
    for name, block in re.findall(r'Validation (\S+)\n((?:\t # .*\n)+)', text):
        results[name] = {m: float(v) for m, v in re.findall(r'# (\w+): ([\d.]+)', block)}
    return results


def quantized_psnr(noisy, clean) -> float:
    """PSNR of a [C, H, W] float image against its clean image, both as the uint8 images metrics see."""
    return calculate_psnr(tensor2img(noisy), tensor2img(clean), crop_border=0)


TRAIN_FILES = {
    'train_RAMiT_CDN.yml': 'noisy', 'train_RAMiT-1_CDN.yml': 'noisy', 'train_RAMiT_GDN.yml': 'noisy',
    'train_RAMiT_LLE.yml': 'paired', 'train_RAMiT-slimLLE_LLE.yml': 'paired', 'train_RAMiT_DR.yml': 'paired',
}


@pytest.mark.parametrize('name', sorted(TRAIN_FILES))
def test_training_option_file_runs_two_iterations(name, tmp_path, basicsr):
    opt = yaml.safe_load(option_file(name).read_text())
    clean = {f'{i:02d}.png': photo(i, 40, 48) for i in range(4)}
    paired = TRAIN_FILES[name] == 'paired'
    roots = []
    for phase in ('train', 'val'):
        # Training folders hold a subfolder per source set, as the option files suggest (symlinks per set).
        gt_dir = write_images(tmp_path / phase / 'gt' / 'set1', clean).parent
        roots.append(f'datasets:{phase}:dataroot_gt={gt_dir}')
        if paired:
            lq_dir = write_images(tmp_path / phase / 'lq' / 'set1', {k: darken(v) for k, v in clean.items()}).parent
            roots.append(f'datasets:{phase}:dataroot_lq={lq_dir}')
    if opt['datasets']['train'].get('pairing') == 've-lol':  # VE-LOL's low/normal names beside LOL's same names
        write_images(tmp_path / 'train' / 'lq' / 'set2', {'low00009.png': darken(photo(9, 40, 48))})
        write_images(tmp_path / 'train' / 'gt' / 'set2', {'normal00009.png': photo(9, 40, 48)})
    result = basicsr('train', '-opt', str(option_file(name)), '--force_yml', *roots, *SHORT, *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    experiment = tmp_path / 'experiments' / opt['name']
    log = next(experiment.glob('*.log')).read_text()
    assert 'progressive: iter 1 -> patch 16, batch 2' in log and 'progressive: iter 2 -> patch 32, batch 1' in log
    assert re.search(r'iter:\s+2, .*l_pix: [\d.e+-]+', log)
    assert log_metrics(experiment)[opt['datasets']['val']['name']]['psnr'] > 0
    assert (experiment / 'models' / 'net_g_latest.pth').is_file()


TASKS = {'CDN': 'dn', 'GDN': 'graydn', 'LLE': 'lle', 'DR': 'dr'}
TEST_SETS = {
    'test_RAMiT-1_CDN.yml': [f'{s}_sigma{n}' for s in ('CBSD68', 'Kodak24', 'McMaster', 'Urban100')
                             for n in (15, 25, 50)],
    'test_RAMiT_GDN.yml': [f'{s}_sigma{n}' for s in ('Set12', 'BSD68', 'Urban100') for n in (15, 25, 50)],
    'test_RAMiT-slimLLE_LLE.yml': ['LOL_eval15'],
    'test_RAMiT_DR.yml': ['Rain100H', 'Test100'],
}


@pytest.mark.parametrize('name', sorted(TRAIN_FILES) + sorted(TEST_SETS))
def test_shipped_restoration_option_files_follow_the_paper_recipe(name):
    opt = load_options(str(option_file(name)))
    variant, kind = re.match(r'(?:train|test)_(.+)_(CDN|GDN|LLE|DR)\.yml', name).groups()
    assert opt['model_type'] == 'RAMiTModel' and opt['num_gpu'] == 'auto' and 'scale' not in opt
    assert opt['network_g'] == dict(type='RAMiT', variant=variant, task=TASKS[kind])
    metrics = opt['val']['metrics']
    assert sorted(metrics) == ['psnr', 'ssim'] and all(m['crop_border'] == 0 for m in metrics.values())
    assert all(m['test_y_channel'] == (kind == 'DR') for m in metrics.values())  # Y for deraining, else RGB/gray
    datasets = [d for k, d in opt['datasets'].items() if k != 'train']
    gray = [bool(d.get('gray')) for d in opt['datasets'].values()]
    assert all(gray) if kind == 'GDN' else not any(gray)
    if name.startswith('test'):
        assert [d['name'] for d in datasets] == TEST_SETS[name]
        assert all(int(d['name'][-2:]) == d['sigma'] for d in datasets if 'sigma' in d['name'])
        return
    train, data = opt['train'], opt['datasets']['train']
    assert data['type'] == ('NoisyImageDataset' if kind in ('CDN', 'GDN') else 'PairedRestorationDataset')
    assert data.get('sigma_range', [0, 50]) == [0, 50] and datasets[0].get('sigma', 25) == 25
    assert (data['gt_size'], data['batch_size_per_gpu'], data['use_hflip'], data['use_rot']) == (128, 32, True, True)
    assert train['progressive'] == dict(iters=[0, 100000, 300000], gt_sizes=[64, 96, 128], batch_sizes=[32, 16, 8])
    assert (train['optim_g']['type'], train['optim_g']['lr'], train['pixel_opt']['type']) == ('Adam', 4e-4, 'L1Loss')
    assert (train['total_iter'], train['warmup_iter']) == (1100000, 20000)
    assert train['scheduler'] == dict(type='MultiStepLR', milestones=[300000, 700000, 900000, 1000000], gamma=0.5)


@pytest.fixture(scope='module')
def denoising_crops(tmp_path_factory, datasets_dir) -> Dict[str, Path]:
    """64x64 centre crops of the first two McMaster and Kodak24 images (the full sets take minutes per image)."""
    root = tmp_path_factory.mktemp('dn_sets')
    folders = {}
    for name in ('McMaster', 'Kodak24'):
        crops = {}
        for path in sorted((datasets_dir / name).iterdir())[:2]:
            img = cv2.imread(str(path))
            h, w = img.shape[0] // 2, img.shape[1] // 2
            crops[path.stem + '.png'] = img[h - 32:h + 32, w - 32:w + 32]
        folders[name] = write_images(root / name, crops)
    return folders


def cdn_options(tmp_path: Path, weights_dir: Path, folders: Dict[str, Path]) -> Path:
    """test_RAMiT-1_CDN.yml limited to the given sets (on their crops), with the published checkpoint."""
    opt = yaml.safe_load(option_file('test_RAMiT-1_CDN.yml').read_text())
    kept = [ds for ds in opt['datasets'].values() if ds['name'].split('_')[0] in folders]
    opt['datasets'] = {f'test_{i}': dict(ds, dataroot_gt=str(folders[ds['name'].split('_')[0]]))
                       for i, ds in enumerate(kept, 1)}
    opt['path']['pretrain_network_g'] = str(weights_dir / 'RAMiT-1_CDN.pth')
    opt['val']['save_img'] = True
    path = tmp_path / 'test_cdn.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def test_published_cdn_model_gives_reproducible_psnr_well_above_the_noisy_input(
        tmp_path, weights_dir, denoising_crops, basicsr):
    options = cdn_options(tmp_path, weights_dir, denoising_crops)
    runs: List[Dict[str, Dict[str, float]]] = []
    outputs: List[Dict[str, bytes]] = []
    for run in ('run1', 'run2'):
        (tmp_path / run).mkdir()
        result = basicsr('test', '-opt', str(options), cwd=tmp_path / run)
        assert result.returncode == 0, result.stderr[-3000:]
        results = tmp_path / run / 'results' / 'test_RAMiT-1_CDN'
        runs.append(log_metrics(results))
        outputs.append({p.relative_to(results).as_posix(): p.read_bytes()
                        for p in sorted((results / 'visualization').rglob('*.png'))})
    assert sorted(runs[0]) == sorted(f'{s}_sigma{n}' for s in ('McMaster', 'Kodak24') for n in (15, 25, 50))
    assert runs[0] == runs[1]
    assert len(outputs[0]) == 12 and outputs[0] == outputs[1], 'the denoised images are bit-identical across runs'
    for name, folder in denoising_crops.items():
        psnr = [runs[0][f'{name}_sigma{s}']['psnr'] for s in (15, 25, 50)]
        assert psnr[0] > psnr[1] > psnr[2]
        noisy = NoisyImageDataset(dict(name=name, phase='test', dataroot_gt=str(folder), io_backend=dict(type='disk'),
                                       sigma=25))
        noisy_psnr = np.mean([quantized_psnr(item['lq'], item['gt']) for item in noisy])
        assert psnr[1] > noisy_psnr + 8, (name, psnr[1], noisy_psnr)


def test_published_slimlle_model_brightens_darkened_photos(tmp_path, weights_dir, datasets_dir, basicsr):
    photos = {p.stem + '.png': cv2.imread(str(p))[:96, :128] for p in sorted((datasets_dir / 'Kodak24').iterdir())[:2]}
    high = write_images(tmp_path / 'high', photos)
    low = write_images(tmp_path / 'low', {k: darken(v) for k, v in photos.items()})
    opt = yaml.safe_load(option_file('test_RAMiT-slimLLE_LLE.yml').read_text())
    opt['datasets']['test_1'].update(dataroot_lq=str(low), dataroot_gt=str(high))
    opt['path']['pretrain_network_g'] = str(weights_dir / 'RAMiT-slimLLE_LLE.pth')
    opt['val']['save_img'] = True
    (tmp_path / 'lle.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
    result = basicsr('test', '-opt', 'lle.yml', cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = tmp_path / 'results' / 'test_RAMiT-slimLLE_LLE'
    psnr = log_metrics(results)['LOL_eval15']['psnr']
    dark_psnr = np.mean([calculate_psnr(darken(img), img, crop_border=0) for img in photos.values()])
    assert psnr > dark_psnr + 5, (psnr, dark_psnr)
    assert len(list((results / 'visualization' / 'LOL_eval15').glob('*.png'))) == 2


def test_gray_option_with_the_colour_checkpoint_is_a_one_line_error(tmp_path, weights_dir, denoising_crops,
                                                                    basicsr):
    options = cdn_options(tmp_path, weights_dir, {'McMaster': denoising_crops['McMaster']})
    result = basicsr('test', '-opt', str(options), '--force_yml', 'network_g:task=graydn',
                     'datasets:test_1:gray=true', cwd=tmp_path)
    assert result.returncode == 2
    message = last_line(result.stderr)  # after the log lines of the datasets and the network built
    assert message.startswith('basicsr test: error: ') and 'Traceback' not in result.stderr
    assert 'RAMiT-1_CDN.pth: checkpoint does not fit' in message and 'gray denoising (1 channel)' in message
    assert [p.name for p in (tmp_path / 'results').iterdir()] == ['.test_RAMiT-1_CDN.lock']  # no results folder


def test_noise_level_outside_0_255_is_a_one_line_error(tmp_path, weights_dir, denoising_crops, basicsr):
    options = cdn_options(tmp_path, weights_dir, {'McMaster': denoising_crops['McMaster']})
    result = basicsr('test', '-opt', str(options), '--force_yml', 'datasets:test_2:sigma=300', cwd=tmp_path)
    assert result.returncode == 2
    message = result.stderr.strip()
    assert message == f"basicsr test: error: {options}: datasets:test_2:sigma: expected float <= 255.0; found 300"
    assert not (tmp_path / 'results').exists()


def test_mm_test_with_the_cdn_config_matches_basicsr_test(tmp_path, weights_dir, denoising_crops, basicsr,
                                                          monkeypatch, capsys):
    crops = denoising_crops['McMaster']
    result = basicsr('test', '-opt', str(cdn_options(tmp_path, weights_dir, {'McMaster': crops})), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = log_metrics(tmp_path / 'results' / 'test_RAMiT-1_CDN')['McMaster_sigma25']
    monkeypatch.chdir(tmp_path)
    # The mmengine config's default test: McMaster at sigma 25; only the folder (its crops) and the variant change.
    weights = weights_dir / 'RAMiT-1_CDN.pth'
    argv = [str(option_file('mmengine_RAMiT_CDN.py')), '--checkpoint', str(weights), '--work-dir', str(tmp_path / 'mm'),
            '--cfg-options', 'model.generator.variant=RAMiT-1', f'test_dataloader.dataset.data_root={crops}',
            'test_dataloader.num_workers=0']
    assert main(['mm-test', *argv], prog='ramit') == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    psnr, ssim = map(float, re.fullmatch(r'PSNR: (\S+) SSIM: (\S+)', line).groups())
    assert psnr == pytest.approx(expected['psnr'], abs=0.01) and ssim == pytest.approx(expected['ssim'], abs=1e-4)
