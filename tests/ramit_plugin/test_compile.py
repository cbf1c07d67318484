"""`train: compile: true`: BasicSR training through torch.compile, plain checkpoints, and the kernel cache reused by
the next run (each run is its own process: Inductor's counters and in-memory graphs are per process)."""
import re

import torch

from ramit import RAMiT, load_weights


def test_compiled_training_saves_plain_checkpoints_and_reuses_the_cache(
        tmp_path, sr_data, tiny_options, options_file, run_basicsr, inductor_cache):
    """Two runs with one Inductor cache: the first compiles unless an earlier test of the suite did, the second loads
    every graph from it. Inductor generates and compiles real C++ kernels, scalar ones (TORCHINDUCTOR_VEC_ISA_OK=0):
    what is tested is the plugin's compile path, and vectorised code generation would double the minute it takes.
    One compile process (not a pool): the suite's other worker has the second core, and the pool cost 30 s of CPU."""
    env = dict(TORCHINDUCTOR_CACHE_DIR=str(inductor_cache), TORCHINDUCTOR_VEC_ISA_OK='0',
               TORCHINDUCTOR_COMPILE_THREADS='1')
    logs = []
    for name in ('compiled', 'compiled_again'):
        opt = tiny_options(sr_data, name=name, total_iter=4, compile=True)
        opt['val']['val_freq'] = 4
        opt['logger'].update(print_freq=1, save_checkpoint_freq=4)
        proc = run_basicsr('train', '-opt', str(options_file(tmp_path / f'{name}.yml', opt)), cwd=tmp_path, env=env,
                           timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        log = next((tmp_path / 'experiments' / name).glob('train_*.log')).read_text()
        logs.append(log)
        assert 'training forward compiled with torch.compile (mode auto: default)' in log  # on the CPU
        assert re.search(r'l_pix: [0-9.e+-]+', log) and 'nan' not in log.split('Start training')[-1].lower()
    compiled = [re.search(r'(\d+) graph\(s\) compiled, (\d+) loaded from the cache', log).groups() for log in logs]
    graphs = int(compiled[0][0]) + int(compiled[0][1])
    assert graphs >= 2  # forward and backward
    assert compiled[1] == ('0', str(graphs))  # the second run compiles nothing

    # Checkpoints keep the plain keys (no _orig_mod.) and load strictly into an uncompiled network.
    weights = tmp_path / 'experiments' / 'compiled' / 'models' / 'net_g_latest.pth'
    state = torch.load(weights, weights_only=True)
    assert not any('_orig_mod' in key for key in state['params'])
    net = load_weights(RAMiT(**{k: v for k, v in tiny_options(sr_data)['network_g'].items() if k != 'type'}), weights)
    with torch.no_grad():
        assert torch.isfinite(net.eval()(torch.rand(1, 3, 12, 12))).all()
