"""The plugin's registration: `import ramit_plugin` fills BasicSR's registries, and mmengine finds the plugin's parts
in its 'ramit_plugin' scope (ramit_plugin.registry) on demand, scoped or imported, under the names they had before
the redesign; both frameworks build the very RAMiT class of ``ramit.network``."""
import json
import subprocess
import sys
import textwrap

import pytest
import torch

import ramit_plugin  # noqa: F401  (registers in BasicSR's registries; torchvision alias before basicsr)
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY
from ramit.checkpoint import load_weights
from ramit.network import RAMiT
from ramit_plugin.mm.restorer import RAMiTRestorer

NET = dict(variant='RAMiT-1', task='sr', upscale=2)
# What the plugin registers, by registry: the names option files and configs use (the same before the redesign).
BASICSR_NAMES = {'arch': ['RAMiT'], 'model': ['RAMiTModel'],
                 'dataset': ['PairedRestorationDataset', 'NoisyImageDataset'], 'loss': ['FFTLoss', 'SSIMLoss']}
MMENGINE_NAMES = {
    'MODELS': ['RAMiT', 'RAMiTRestorer', 'RAMiTDataPreprocessor', 'L1Loss', 'MSELoss', 'CharbonnierLoss', 'FFTLoss',
               'SSIMLoss'],
    'DATASETS': ['PairedRestorationDataset', 'NoisyImageDataset'],
    'DATA_SAMPLERS': ['SeededInfiniteSampler'],
    'TRANSFORMS': ['PairedRandomCrop', 'PairedFlipRotate', 'AddGaussianNoise', 'PackRestorationInputs'],
    'HOOKS': ['WarmStartHook', 'RandomStateHook', 'WeightsOnlyCheckpointHook'],
    'METRICS': ['PSNRSSIMMetric'],
}

# Run in a fresh interpreter: the root build must find ramit_plugin with nothing imported beforehand.
FRESH = textwrap.dedent('''
    import json, sys
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    assert 'ramit_plugin' not in sys.modules
    net = dict(variant='RAMiT-1', task='sr', upscale=2)
    found = {}
    found['root'] = type(MODELS.build(dict(type='ramit_plugin.RAMiT', **net)))
    found['root_restorer'] = type(MODELS.build(dict(type='ramit_plugin.RAMiTRestorer',
                                                    generator=dict(type='RAMiT', **net))).generator)
    found['scope_key'] = type(MODELS.build(dict(type='RAMiT', _scope_='ramit_plugin', **net)))
    cfg = Config(dict(custom_imports=dict(imports=['ramit_plugin']), default_scope='ramit_plugin',
                      model=dict(type='RAMiT', **net)))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        found['default_scope'] = type(MODELS.build(cfg.model))
    from basicsr.utils.registry import ARCH_REGISTRY
    from ramit.network import RAMiT
    import ramit_cli.mm  # noqa: F401  (the commands too)
    assert not [m for m in sys.modules if m.split('.')[0] in ('mmcv', 'mmagic')], 'mmcv/mmagic imported'
    print(json.dumps({k: [f'{c.__module__}.{c.__qualname__}', c is RAMiT, c is ARCH_REGISTRY.get('RAMiT')]
                      for k, c in found.items()}))
''')

CUSTOM_IMPORTS = textwrap.dedent('''
    import sys
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(sys.argv[1])  # imports ramit_plugin through custom_imports
    assert 'ramit_plugin' in sys.modules
    init_default_scope(cfg.default_scope)
    net = MODELS.build(cfg.model)
    from ramit.network import RAMiT
    print(type(net) is RAMiT, net.describe())
''')


def test_root_scoped_default_scope_and_custom_imports_builds_give_the_basicsr_class(tmp_path):
    """One class whichever way mmengine is asked, and neither mmcv nor mmagic gets imported on the way."""
    config = tmp_path / 'cfg.py'
    config.write_text("custom_imports = dict(imports=['ramit_plugin'], allow_failed_imports=False)\n"
                      "default_scope = 'ramit_plugin'\n"
                      "model = dict(type='RAMiT', variant='RAMiT-1', task='sr', upscale=3)\n")
    # Two fresh interpreters, run side by side (each must start without ramit_plugin imported).
    procs = [subprocess.Popen([sys.executable, '-c', script, *args], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for script, args in ((FRESH, ()), (CUSTOM_IMPORTS, (str(config),)))]
    (fresh_out, fresh_err), (custom_out, custom_err) = (p.communicate(timeout=180) for p in procs)
    assert procs[0].returncode == 0, fresh_err[-2000:]
    assert procs[1].returncode == 0, custom_err[-2000:]
    assert json.loads(fresh_out.strip().splitlines()[-1]) == {
        k: ['ramit.network.RAMiT', True, True]
        for k in ('root', 'root_restorer', 'scope_key', 'default_scope')}
    assert custom_out.strip().splitlines()[-1] == 'True RAMiT-1 x3 SR (3 channels)'


def test_mmengine_and_basicsr_networks_with_one_checkpoint_give_identical_outputs(weights_dir, tmp_path):
    from mmengine.registry import MODELS
    from mmengine.runner.checkpoint import load_checkpoint as mmengine_load_checkpoint

    weights = weights_dir / 'RAMiT-1_X2.pth'
    basicsr_net = load_weights(ARCH_REGISTRY.get('RAMiT')(**NET), weights).eval()
    restorer = MODELS.build(dict(type='ramit_plugin.RAMiTRestorer', generator=dict(type='RAMiT', **NET))).eval()
    assert isinstance(restorer, RAMiTRestorer) and type(restorer.generator) is RAMiT
    load_weights(restorer.generator, weights)  # what `ramit mm-test --checkpoint` does with the raw file
    # ... and what mmengine's own loader does with a checkpoint the Runner saved.
    saved = tmp_path / 'runner.pth'
    torch.save(dict(meta=dict(iter=1), state_dict=restorer.state_dict()), saved)
    reloaded = MODELS.build(dict(type='ramit_plugin.RAMiTRestorer', generator=dict(type='RAMiT', **NET))).eval()
    mmengine_load_checkpoint(reloaded, str(saved), map_location='cpu', strict=True)

    lq = torch.rand(1, 3, 20, 27, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = basicsr_net(lq)
        assert torch.equal(restorer(lq, mode='tensor'), expected)
        assert torch.equal(reloaded(lq, mode='tensor'), expected)


def test_pretrained_loads_the_raw_x2_weights_and_warm_starts_x3_without_to_target(weights_dir):
    from mmengine.registry import MODELS

    weights = str(weights_dir / 'RAMiT-1_X2.pth')
    x2 = MODELS.build(dict(type='ramit_plugin.RAMiTRestorer', generator=dict(type='RAMiT', **NET),
                           pretrained=weights))
    expected = load_weights(RAMiT(**NET), weights).state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in x2.generator.state_dict().items())
    x3 = MODELS.build(dict(type='ramit_plugin.RAMiTRestorer', generator=dict(type='RAMiT', **dict(NET, upscale=3)),
                           pretrained=weights, pretrained_exclude=('to_target.',)))
    shared = {k: v for k, v in x3.generator.state_dict().items() if not k.startswith('to_target.')}
    assert shared and all(torch.equal(v, expected[k]) for k, v in shared.items())


def test_import_ramit_plugin_fills_basicsrs_registries_with_the_core_classes():
    from ramit.losses import FFTLoss, SSIMLoss
    from ramit_plugin.data import NoisyImageDataset, PairedRestorationDataset
    from ramit_plugin.models import RAMiTModel

    registries = {r._name: r for r in (ARCH_REGISTRY, MODEL_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY)}
    found = {name: [n for n in names if n in registries[name]] for name, names in BASICSR_NAMES.items()}
    assert found == BASICSR_NAMES
    assert ARCH_REGISTRY.get('RAMiT') is RAMiT and MODEL_REGISTRY.get('RAMiTModel') is RAMiTModel
    assert (LOSS_REGISTRY.get('FFTLoss'), LOSS_REGISTRY.get('SSIMLoss')) == (FFTLoss, SSIMLoss)
    assert DATASET_REGISTRY.get('NoisyImageDataset') is NoisyImageDataset
    assert DATASET_REGISTRY.get('PairedRestorationDataset') is PairedRestorationDataset


@pytest.mark.parametrize('registry', sorted(MMENGINE_NAMES))
def test_mmengines_ramit_plugin_registries_resolve_every_name(registry):
    from ramit_plugin import registry as scope

    child = getattr(scope, registry)
    assert child.scope == 'ramit_plugin'
    # Registered in the plugin's own registry (a lookup alone would also find a class of mmengine's root registry).
    missing = [name for name in MMENGINE_NAMES[registry] if child.get(name) is None or name not in child.module_dict]
    assert not missing, f'{registry} of scope ramit_plugin does not resolve {missing}'
    if registry == 'MODELS':
        assert child.get('RAMiT') is RAMiT and child.get('RAMiTRestorer') is RAMiTRestorer
