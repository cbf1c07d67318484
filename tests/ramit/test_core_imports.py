"""The package's one rule: ``ramit`` imports no training framework (basicsr, mmengine), no spandrel and no
torchvision, through a whole restoration; ``import ramit`` and the command line's light modules import no torch.
Each check runs in a fresh interpreter: this test process has imported everything already."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ramit.export import PHOTOS
from tests.ramit.conftest import tiny_network

FOREIGN = ('basicsr', 'mmengine', 'spandrel', 'torchvision')

RESTORE = """
import json, sys
import ramit
from ramit import load_network, restore_tensor, torch_run
from ramit.images import encode_png, read_image
from ramit.inference import WRITER
import torch
net = load_network(sys.argv[1])
image = read_image(sys.argv[2])
x = torch.from_numpy(image.rgb).permute(2, 0, 1)[None].contiguous()
out = restore_tensor(torch_run(net), x, net.upscale)
png = encode_png(out[0].permute(1, 2, 0).numpy(), image.alpha, image.max_value, WRITER)
foreign = json.loads(sys.argv[3])
print(json.dumps(dict(shape=list(out.shape), png=png[:8].hex(), loaded=sorted(
    name for name in foreign if name in sys.modules or any(m.startswith(name + '.') for m in sys.modules)))))
"""


def fresh(code: str, *args: str) -> str:
    """stdout of ``code`` run by a fresh interpreter (failing the test with its stderr if it fails)."""
    proc = subprocess.run([sys.executable, '-c', code, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_a_whole_restoration_imports_no_framework_spandrel_or_torchvision(tmp_path):
    torch.save({'params_ema': tiny_network().state_dict()}, tmp_path / 'tiny.pth')
    photo = sorted(PHOTOS.glob('*.png'))[0]  # astronaut_61x45.png
    found = json.loads(fresh(RESTORE, str(tmp_path / 'tiny.pth'), str(photo), json.dumps(FOREIGN)))
    assert found['shape'] == [1, 3, 90, 122]
    assert found['png'] == '89504e470d0a1a0a'  # a PNG was made
    assert found['loaded'] == []


def test_import_ramit_and_the_light_command_line_modules_import_no_torch():
    code = ('import sys, {module}\n'
            'print(sorted(m for m in ("torch", "numpy", "cv2") + {foreign!r} if m in sys.modules))')
    assert fresh(code.format(module='ramit', foreign=FOREIGN)) == '[]\n'
    # The command line offers its choices (ramit.hparams) and checks arguments before any heavy import.
    for module in ('ramit.hparams', 'ramit_cli.prechecks', 'ramit_cli.parsers'):
        loaded = fresh(code.format(module=module, foreign=FOREIGN))
        assert 'torch' not in loaded and not any(name in loaded for name in FOREIGN), (module, loaded)
    # Touching a lazy name imports what defines it, and only then.
    assert fresh('import sys, ramit\nramit.RAMiT\nprint("torch" in sys.modules)') == 'True\n'
    assert fresh('import sys, ramit\nramit.VARIANTS\nprint("torch" in sys.modules)') == 'False\n'


def test_the_lazy_names_are_the_modules_own():
    import ramit
    import ramit.checkpoint
    import ramit.inference
    import ramit.network

    assert ramit.RAMiT is ramit.network.RAMiT and ramit.load_network is ramit.inference.load_network
    assert ramit.read_checkpoint is ramit.checkpoint.read_checkpoint
    assert set(ramit.__all__) >= {'RAMiT', 'load_network', 'restore_tensor', 'torch_run', 'load_weights'}
    with pytest.raises(AttributeError, match="^module 'ramit' has no attribute 'build_network'$"):
        ramit.build_network  # noqa: B018 (the old name is gone, not silently aliased)
    assert Path(ramit.__file__).parent.name == 'ramit'
