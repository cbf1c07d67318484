"""`ramit convert` and safetensors on the command line: a converted file needs no flag anywhere; BasicSR trains from
one and saves them with `logger: save_safetensors`."""
import copy
import shutil
import stat

import cv2
import numpy as np
import torch

from ramit import RAMiT, read_checkpoint
from ramit.checkpoint import network_description


def test_converted_denoiser_needs_no_task_where_its_pth_does(reference_dir, tmp_path, capsys, ramit):
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
    infer = ['infer', '-i', str(photo), '--backend', 'torch', '--weights']
    assert ramit(*infer, str(pth), '-o', str(tmp_path / 'a')) == 2
    assert ramit(*infer, str(pth), '-o', str(tmp_path / 'a'), '--task', 'dn') == 0
    assert ramit(*infer, str(converted), '-o', str(tmp_path / 'b')) == 0
    assert ((tmp_path / 'a' / 'noisy_RAMiT_dn.png').read_bytes() == (tmp_path / 'b' / 'noisy_RAMiT_dn.png')
            .read_bytes())


def test_existing_output_wrong_name_and_contradicting_flags(reference_dir, tmp_path, capsys, ramit):
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
    assert read_checkpoint(out).description['variant'] == 'RAMiT-slimLLE'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['lle.safetensors']


def test_the_converted_file_gets_the_umask_mode(tiny_weights, tmp_path, ramit, umask_022):
    """Written atomically through a private temporary file, yet readable by others as any new file is (0644)."""
    out = tmp_path / 'tiny.safetensors'
    assert ramit('convert', str(tiny_weights), str(out)) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_save_safetensors_must_be_a_boolean(tmp_path, sr_data, tiny_options, options_file, capsys, monkeypatch):
    from ramit_cli.main import main

    opt = copy.deepcopy(tiny_options(sr_data))
    opt['logger']['save_safetensors'] = 'yes'
    options_file(tmp_path / 'bad.yml', opt)
    monkeypatch.chdir(tmp_path)
    assert main(['train', '-opt', 'bad.yml'], 'basicsr') == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('basicsr train: error: bad.yml: logger:save_safetensors: ') and "'yes'" in err, err
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.yml']


def test_basicsr_trains_from_safetensors_and_saves_them(tmp_path, sr_data, tiny_options, options_file, run_basicsr,
                                                        ramit):
    torch.manual_seed(0)
    start = RAMiT(**{k: v for k, v in tiny_options(sr_data)['network_g'].items() if k != 'type'})
    torch.save(start.state_dict(), tmp_path / 'start.pth')
    pre = tmp_path / 'start.safetensors'
    assert ramit('convert', str(tmp_path / 'start.pth'), str(pre)) == 0
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
    assert pth.description == st.description == network_description(start)
    assert pth.weights.keys() == st.weights.keys()
    assert all(torch.equal(v, st.weights[k]) for k, v in pth.weights.items())
