"""RAMiT in spandrel (chaiNNer, ComfyUI): every reference checkpoint opens from the file alone and runs the same
network and protocol as `ramit infer`; `ramit convert` files load without flags; the task of scale-1 colour
checkpoints; detection by spandrel's KeyCondition; the adapter imports no training framework."""
import copy
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ramit import RAMiT
from ramit.checkpoint import CheckpointError, network_description, write_safetensors
from ramit.hub import lookup
from ramit.inference import load_network, restore_tensor, torch_run
from ramit.protocol import protocol_forward
from ramit_cli.main import main as ramit

REPO = Path(__file__).resolve().parents[2]
REFERENCE = ('RAMiT-1_X2', 'RAMiT-1_X3', 'RAMiT-1_X4', 'RAMiT-1_CDN', 'RAMiT-slimSR_X2', 'RAMiT-slimSR_X3',
             'RAMiT-slimSR_X4', 'RAMiT-slimLLE_LLE')
# A custom size of the base variant, whose colour scale-1 tasks (dn, lle, dr) have identical shapes.
TINY_BASE = dict(variant='RAMiT', dim=16, depths=(1, 1, 1, 1), window_size=4, fuse_expand_groups=1)
FRAMEWORKS = ('basicsr', 'mmengine', 'ramit_plugin')  # (spandrel itself imports torchvision)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB, peak 1) of ``a`` against ``b`` in float64."""
    mse = (a.double() - b.double()).square().mean().item()
    return 10 * math.log10(1 / mse) if mse else math.inf


def tiny_base(task: str, seed: int = 0) -> RAMiT:
    """A tiny base-variant network of ``task`` (random weights), in eval mode."""
    torch.manual_seed(seed)
    return RAMiT(task=task, **TINY_BASE).eval()


def fresh_python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (single-threaded torch); the CompletedProcess (text)."""
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))


@pytest.mark.parametrize('name', REFERENCE)
def test_reference_checkpoint_opens_in_spandrel_and_runs_as_ramit_infer(name, spandrel, reference_dir, golden_dir,
                                                                        tmp_path):
    published = lookup(name)
    weights = reference_dir / 'weights' / published.file
    loader = spandrel.ModelLoader()
    # Only RAMiT claims the file, so the registry's detection order does not matter.
    sd = loader.load_state_dict_from_file(weights)
    assert [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures('detection') if a.detect(sd)] == ['RAMiT']
    desc = loader.load_from_file(weights)
    assert isinstance(desc, spandrel.ImageModelDescriptor) and type(desc.model) is RAMiT
    assert (desc.model.variant, desc.model.task, desc.scale) == (published.variant, published.task, published.scale)
    assert desc.input_channels == desc.output_channels == 3
    assert desc.purpose == ('SR' if published.scale > 1 else 'Restoration')
    assert desc.supports_half and desc.supports_bfloat16 and desc.size_requirements.none
    golden = np.load(golden_dir / f'{name}.npz')
    # Two of the three golden inputs (45x61 needs padding, 64x64 none); all three: tests/ramit/test_network.py.
    inputs = [torch.from_numpy(golden[f'input{i}'])[None] for i in range(2)]
    # What `ramit infer --backend torch` computes for the same file (the published name gives the task).
    net = load_network(weights, published=published)
    infer_run = torch_run(net)
    called = []
    for i, x in enumerate(inputs):
        with torch.no_grad():
            out = desc.model(x)[0].numpy()
        assert np.abs(out - golden[f'output{i}']).max() < 1e-4, (name, i)
        # Calling the descriptor runs the paper's protocol (mirror padding to 32), clamped as spandrel promises:
        # the output of `ramit infer`'s own pass, before it quantises.
        called.append(desc(x))
        expected = restore_tensor(infer_run, x, net.upscale).clamp(0, 1)
        assert called[-1].shape == expected.shape and torch.allclose(called[-1], expected, atol=1e-6, rtol=0), i
    # The 64x64 input needs no padding, so there the call is the golden output itself.
    assert np.abs(called[1][0].numpy() - np.clip(golden['output1'], 0, 1)).max() < 1e-4

    converted = tmp_path / f'{name}.safetensors'
    assert ramit(['convert', str(weights), str(converted)], prog='ramit') == 0
    again = loader.load_from_file(converted)
    assert (again.model.hparams, again.tags) == (desc.model.hparams, desc.tags)
    assert all(torch.equal(again(x), out) for x, out in zip(inputs, called))
    # ... and the package's own loader needs no flag for it either (RAMiT-1_CDN needs --task as a renamed .pth).
    with torch.inference_mode():
        assert torch.equal(load_network(converted)(inputs[0]), desc.model(inputs[0]))


def test_task_of_scale1_colour_checkpoints(spandrel, tmp_path, monkeypatch, caplog):
    x = torch.rand(1, 3, 20, 28, generator=torch.Generator().manual_seed(1))
    net = tiny_base('lle')
    with torch.inference_mode():
        expected = protocol_forward(net, x).clamp(0, 1)
    raw = tmp_path / 'lle_raw.pth'
    torch.save(net.state_dict(), raw)
    loader = spandrel.ModelLoader()
    monkeypatch.delenv('RAMIT_SPANDREL_TASK', raising=False)
    with caplog.at_level(logging.WARNING, logger='ramit_spandrel'):
        assert loader.load_from_file(raw).model.task == 'dn'
    assert 'does not say its task (dn/lle/dr have identical shapes); loaded as dn' in caplog.text
    monkeypatch.setenv('RAMIT_SPANDREL_TASK', 'lle')
    desc = loader.load_from_file(raw)
    assert desc.model.task == 'lle' and torch.equal(desc(x), expected)
    monkeypatch.setenv('RAMIT_SPANDREL_TASK', 'sr')
    with pytest.raises(CheckpointError, match='^RAMIT_SPANDREL_TASK=sr: not a task of this checkpoint; valid: dn, '
                                              'lle, dr$'):
        loader.load_from_file(raw)
    # A description in the file wins over the variable: spandrel keeps only tensors, and one of them carries it.
    described = tmp_path / 'lle.safetensors'
    write_safetensors(described, net.state_dict(), network_description(net))
    monkeypatch.setenv('RAMIT_SPANDREL_TASK', 'dr')
    desc = loader.load_from_file(described)
    assert desc.model.task == 'lle' and torch.equal(desc(x), expected)


def test_published_shapes_with_a_single_such_task_need_no_setting(spandrel, monkeypatch):
    """RAMiT-1 is published for colour denoising only; the base variant for dn, lle and dr (so the variable)."""
    monkeypatch.setenv('RAMIT_SPANDREL_TASK', 'dr')
    loader = spandrel.ModelLoader()
    assert loader.load_from_state_dict(RAMiT('RAMiT-1', 'dn').state_dict()).model.task == 'dn'
    assert loader.load_from_state_dict(RAMiT('RAMiT', 'lle').state_dict()).model.task == 'dr'
    gray = loader.load_from_state_dict(RAMiT('RAMiT', 'graydn').state_dict())  # one channel: only graydn
    assert (gray.model.task, gray.input_channels, gray.output_channels) == ('graydn', 1, 1)
    assert gray.purpose == 'Restoration'


def test_basicsr_ddp_and_mmengine_key_layouts(spandrel):
    net, ema = tiny_base('sr', seed=1), tiny_base('sr', seed=2)
    loader = spandrel.ModelLoader()
    forms = {
        'basicsr': {'params': net.state_dict(), 'params_ema': ema.state_dict(),
                    'ramit_config': network_description(ema)},
        'ddp': {f'module.{k}': v for k, v in ema.state_dict().items()},
        'mmengine generator': {f'generator.{k}': v for k, v in ema.state_dict().items()},
    }
    for form, sd in forms.items():
        desc = loader.load_from_state_dict(sd)
        assert desc.model.hparams == ema.hparams, form
        assert all(torch.equal(v, ema.state_dict()[k]) for k, v in desc.model.state_dict().items()), form
        assert desc.tags == ['RAMiT', 'sr', '16dim', 'custom']


def test_detection_needs_every_key_a_ramit_network_has(spandrel):
    """detect: one anchor (any prefix), then spandrel's KeyCondition over the keys every RAMiT size has; a state dict
    with the anchor but without one of those is left to the other architectures."""
    from spandrel.util import KeyCondition

    import ramit_spandrel

    assert isinstance(ramit_spandrel.HAS_RAMIT_KEYS, KeyCondition)
    sd = tiny_base('sr').state_dict()
    assert ramit_spandrel.detect(sd) and ramit_spandrel.detect({f'generator.{k}': v for k, v in sd.items()})
    for key in ('stage1.blocks.block0.qkv_proj.qkv.weight', 'to_target.final_conv.weight',
                'attn_mix.mobivari.pw_conv.weight'):
        assert key in sd
        assert not ramit_spandrel.detect({k: v for k, v in sd.items() if k != key}), key
    # Two networks in one file (two anchors): not one RAMiT.
    assert not ramit_spandrel.detect({**sd, **{f'copy.{k}': v for k, v in sd.items()}})


def test_other_architectures_are_left_to_spandrel(spandrel):
    from spandrel.architectures.Compact import Compact

    from ramit_spandrel import detect

    sd = Compact(num_conv=2, upscale=2).state_dict()
    assert not detect(sd)
    assert spandrel.ModelLoader().load_from_state_dict(sd).architecture.id == 'Compact'


def test_half_and_bfloat16_run_through_the_descriptor(spandrel, reference_dir, golden_dir):
    desc = spandrel.ModelLoader().load_from_file(reference_dir / 'weights' / 'RAMiT-slimSR_X2.pth')
    x = torch.from_numpy(np.load(golden_dir / 'RAMiT-slimSR_X2.npz')['input0'])[None]  # 45x61: padded
    full = desc(x)
    for dtype, bound in ((torch.float16, 45.0), (torch.bfloat16, 38.0)):
        half = copy.deepcopy(desc).to(dtype)
        out = half(x.to(dtype))
        assert out.dtype == dtype and torch.isfinite(out).all()
        assert psnr(out, full) >= bound, (dtype, psnr(out, full))


def test_mmengine_runner_checkpoints_open_after_ramit_convert(spandrel, tmp_path):
    """spandrel's unpickler refuses the Runner's extra objects (message hub); `ramit convert` reads them safely."""
    from mmengine.logging import HistoryBuffer

    from ramit_plugin.mm.runtime import _PortableHistoryBuffer

    net = tiny_base('sr')
    history = _PortableHistoryBuffer.__new__(_PortableHistoryBuffer)
    history.__dict__.update(HistoryBuffer([0.5, 0.25], [1, 1]).__dict__)
    checkpoint = tmp_path / 'iter_2.pth'
    torch.save({'meta': {'iter': 2, 'seed': np.int64(0)}, 'message_hub': {'log_scalars': {'train/loss': history}},
                'state_dict': {f'generator.{k}': v for k, v in net.state_dict().items()}}, checkpoint)
    with pytest.raises(Exception, match='is forbidden'):  # spandrel's restricted unpickler
        spandrel.ModelLoader().load_from_file(checkpoint)
    # In a fresh process, as a user runs it (nothing of mmengine imported before the checkpoint is read).
    proc = subprocess.run([sys.executable, '-m', 'ramit_cli', 'convert', str(checkpoint), 'iter_2.safetensors'],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr
    desc = spandrel.ModelLoader().load_from_file(tmp_path / 'iter_2.safetensors')
    assert desc.model.hparams == net.hparams


def test_ramit_plugin_works_without_spandrel():
    """(That the adapter imports no training framework is checked with the ComfyUI node pack, which imports it.)"""
    proc = fresh_python("import sys; sys.modules['spandrel'] = None; import ramit_plugin; "
                        "assert 'ramit_spandrel' not in sys.modules; print('imported')")
    assert proc.returncode == 0 and proc.stdout.strip() == 'imported', proc.stderr


def test_the_comfyui_node_pack_registers_ramit_and_declares_no_nodes(spandrel):
    """integrations/comfyui/ramit_comfyui imported by path, as ComfyUI loads custom_nodes/<pack>/__init__.py, in a
    fresh interpreter: RAMiT is in spandrel's registry, the mappings are there (empty: ComfyUI's own upscale nodes
    run RAMiT), one line is logged."""
    init = REPO / 'integrations' / 'comfyui' / 'ramit_comfyui' / '__init__.py'
    proc = fresh_python(
        'import importlib.util, logging, sys\n'
        'logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")\n'
        f'spec = importlib.util.spec_from_file_location("ramit_comfyui", {str(init)!r})\n'
        'pack = importlib.util.module_from_spec(spec); sys.modules["ramit_comfyui"] = pack\n'
        'spec.loader.exec_module(pack)\n'
        'import spandrel\n'
        "print('registered', type(spandrel.MAIN_REGISTRY.get('RAMiT').architecture).__module__)\n"
        "print('mappings', pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS)\n"
        f'print("frameworks", sorted({{m.split(".")[0] for m in sys.modules}} & {set(FRAMEWORKS)!r}))')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ['registered ramit_spandrel', 'mappings {} {}', 'frameworks []']
    logged = [line for line in proc.stderr.splitlines() if line.startswith('ramit_comfyui: ')]
    assert len(logged) == 1 and 'RAMiT registered in spandrel' in logged[0]
