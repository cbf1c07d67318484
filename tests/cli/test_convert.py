"""`ramit convert` and safetensors on the command line: a converted file needs no flag anywhere; BasicSR trains from
one and saves them with `logger: save_safetensors`."""
import copy
import shutil

import cv2
import numpy as np
import torch

from ramit_cli.main import main
from ramit_plugin import RAMiT, read_checkpoint
from ramit_plugin.checkpoint import config_metadata


def ramit(*argv: str) -> int:
    """`ramit ARGV` in this process; returns the exit status."""
    return main(list(argv), prog='ramit')


def test_converted_denoiser_needs_no_task_where_its_pth_does(reference_dir, tmp_path, capsys):
    # A renamed copy: a published file name would tell the task, the shapes do not (dn, lle and dr share them).
    pth = tmp_path / 'mine.pth'
    shutil.copy(reference_dir / 'weights' / 'RAMiT-1_CDN.pth', pth)
    converted = tmp_path / 'mine.safetensors'
    assert ramit('convert', str(pth), str(converted)) == 2
    assert capsys.readouterr().err.strip() == (f'ramit convert: error: {pth}: a RAMiT-1 scale-1 checkpoint can be any '
                                               'of dn/lle/dr (same shapes); give --task')
    assert not converted.exists()
    assert ramit('convert', str(pth), str(converted), '--task', 'dn') == 0
    assert capsys.readouterr().out.strip() == f'RAMiT-1 colour denoising (3 channels): {pth} -> {converted}'

    photo = tmp_path / 'noisy.png'
    rng = np.random.default_rng(0)
    cv2.imwrite(str(photo), np.clip(rng.normal(128, 40, (24, 30, 3)), 0, 255).astype(np.uint8))
    assert ramit('infer', '-i', str(photo), '-o', str(tmp_path / 'a'), '--weights', str(pth)) == 2
    assert ramit('infer', '-i', str(photo), '-o', str(tmp_path / 'a'), '--weights', str(pth), '--task', 'dn') == 0
    assert ramit('infer', '-i', str(photo), '-o', str(tmp_path / 'b'), '--weights', str(converted)) == 0
    assert ((tmp_path / 'a' / 'noisy_RAMiT_dn.png').read_bytes() == (tmp_path / 'b' / 'noisy_RAMiT_dn.png')
            .read_bytes())


def test_existing_output_wrong_name_and_contradicting_flags(reference_dir, tmp_path, capsys):
    weights = str(reference_dir / 'weights' / 'RAMiT-slimLLE_LLE.pth')
    out = tmp_path / 'lle.safetensors'
    out.write_bytes(b'precious')
    assert ramit('convert', weights, str(out)) == 2
    assert capsys.readouterr().err.strip() == f'ramit convert: error: {out} exists; --overwrite replaces it'
    assert out.read_bytes() == b'precious'
    assert ramit('convert', weights, str(tmp_path / 'lle.pth')) == 2
    assert 'lle.pth: the output file name must end with .safetensors' in capsys.readouterr().err
    assert ramit('convert', weights, str(out), '--overwrite', '--scale', '2') == 2
    assert '--scale 2 contradicts the checkpoint, which is x1' in capsys.readouterr().err
    assert out.read_bytes() == b'precious'
    assert ramit('convert', weights, str(out), '--overwrite') == 0
    assert read_checkpoint(out)[1]['variant'] == 'RAMiT-slimLLE'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['lle.safetensors']


def test_save_safetensors_must_be_a_boolean(tmp_path, sr_data, tiny_options, options_file, capsys, monkeypatch):
    opt = copy.deepcopy(tiny_options(sr_data))
    opt['logger']['save_safetensors'] = 'yes'
    options_file(tmp_path / 'bad.yml', opt)
    monkeypatch.chdir(tmp_path)
    assert main(['train', '-opt', 'bad.yml'], 'basicsr') == 2
    assert capsys.readouterr().err.strip() == ("basicsr train: error: bad.yml: logger:save_safetensors: 'yes' is not "
                                               'true or false')


def test_basicsr_trains_from_safetensors_and_saves_them(tmp_path, sr_data, tiny_options, options_file, run_basicsr):
    torch.manual_seed(0)
    start = RAMiT(**{k: v for k, v in tiny_options(sr_data)['network_g'].items() if k != 'type'})
    pre = tmp_path / 'start.safetensors'
    assert ramit('convert', str(save(start, tmp_path / 'start.pth')), str(pre)) == 0
    opt = tiny_options(sr_data, name='st', total_iter=2)
    opt['path']['pretrain_network_g'] = str(pre)
    opt['logger'].update(save_checkpoint_freq=2, save_safetensors=True)
    opt['val']['val_freq'] = 2
    proc = run_basicsr('train', '-opt', str(options_file(tmp_path / 'st.yml', opt)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'Loading RAMiT from {pre}' in proc.stderr
    models = tmp_path / 'experiments' / 'st' / 'models'
    assert sorted(p.name for p in models.iterdir()) == ['net_g_2.pth', 'net_g_2.safetensors', 'net_g_latest.pth',
                                                        'net_g_latest.safetensors']
    pth, st = read_checkpoint(models / 'net_g_latest.pth'), read_checkpoint(models / 'net_g_latest.safetensors')
    assert pth[1] == st[1] == config_metadata(start)
    assert pth[0].keys() == st[0].keys() and all(torch.equal(v, st[0][k]) for k, v in pth[0].items())


def save(net: torch.nn.Module, path):
    """torch.save a network's state dict; returns the path."""
    torch.save(net.state_dict(), path)
    return path
