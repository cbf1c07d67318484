"""The command-line front end (ramit_cli): help without heavy imports, one error format, --threads everywhere."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ramit_cli import parsers
from ramit_cli.main import COMMANDS, main

HEAVY = ('torch', 'basicsr', 'mmengine', 'cv2', 'numpy', 'ramit_plugin')
HELP_CALLS = [(['--help'], 'ramit'), (['infer', '--help'], 'ramit'), (['--help'], 'basicsr'),
              (['train', '--help'], 'basicsr'), (['mm-train', '--help'], 'ramit')]


@pytest.mark.parametrize('argv, prog', HELP_CALLS)
def test_help_imports_neither_torch_nor_basicsr(argv, prog):
    """A fresh interpreter answers --help, then reports which heavy modules it imported on the way."""
    code = textwrap.dedent('''
        import json, sys
        from ramit_cli.main import main
        try:
            main(json.loads(sys.argv[1]), sys.argv[2])
        except SystemExit as exit_:
            assert exit_.code in (0, None), exit_.code
        heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.argv[3])))
        print('HEAVY', json.dumps(heavy))
    ''')
    proc = subprocess.run([sys.executable, '-c', code, json.dumps(argv), prog, json.dumps(HEAVY)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    *help_text, last = proc.stdout.strip().splitlines()
    assert json.loads(last.split(' ', 1)[1]) == []
    assert any(line.startswith(f'usage: {prog}') for line in help_text)


def test_console_scripts_and_module_run_the_front_end(tmp_path):
    bin_dir = Path(sys.executable).parent
    for cmd in ([str(bin_dir / 'ramit'), '--help'], [str(bin_dir / 'basicsr'), '--help'],
                [sys.executable, '-m', 'ramit_cli', '--help']):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert proc.returncode == 0 and 'mm-train' in proc.stdout, cmd
    assert 'usage: basicsr <command>' in subprocess.run([str(bin_dir / 'basicsr')], capture_output=True,
                                                        text=True, timeout=60).stdout
    # Scripts generated as `from ramit_plugin.cli.main import main`, and `-m ramit_plugin.cli.main`, keep working.
    from ramit_plugin.cli.main import main as former
    assert former is main
    proc = subprocess.run([sys.executable, '-m', 'ramit_plugin.cli.main', 'infer', '-i', 'nope.png', '-o', 'o',
                           '--weights', 'w.pth'], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip() == 'ramit infer: error: -i nope.png: no such file, folder or matching images'


def test_parser_choices_agree_with_the_network():
    from ramit_plugin.archs.ramit_arch import TASKS, VARIANTS
    from ramit_plugin.compilation import MODES
    assert parsers.VARIANT_NAMES == tuple(VARIANTS) and parsers.TASK_NAMES == tuple(TASKS)
    assert parsers.COMPILE_MODES == MODES


def test_unknown_command_and_usage_errors_are_one_line(capsys):
    assert main(['trian'], prog='basicsr') == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("basicsr: error: unknown command 'trian'; valid commands: train, test,")
    assert len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as exit_:
        main(['infer', '-o', 'out'], prog='ramit')
    assert exit_.value.code == 2
    assert 'ramit infer: error: the following arguments are required: -i/--input, --weights' in capsys.readouterr().err


def missing_input_cases(tmp: Path) -> dict:
    """command -> (argv naming a missing input file or folder, text the error names)."""
    nope = tmp / 'nope'
    image = tmp / 'x.png'
    return {
        'train': (['train', '-opt', f'{nope}.yml'], f'{nope}.yml: cannot read the option file'),
        'test': (['test', '-opt', f'{nope}.yml'], f'{nope}.yml: cannot read the option file'),
        'make-lmdb': (['make-lmdb', '--input', str(nope), '--output', str(tmp / 'x.lmdb')],
                      f'--input {nope}: no such folder'),
        'make-lr': (['make-lr', '--input', str(nope), '--output', str(tmp / 'lr'), '--scale', '2'],
                    f'--input {nope}: no such folder'),
        'extract-subimages': (['extract-subimages', '--input', str(nope), '--output', str(tmp / 'sub')],
                              f'--input {nope}: no such folder'),
        'infer (image)': (['infer', '-i', f'{nope}.png', '-o', str(tmp / 'out'), '--weights', f'{nope}.pth'],
                          f'-i {nope}.png: no such file, folder or matching images'),
        'infer (weights)': (['infer', '-i', str(image), '-o', str(tmp / 'out'), '--weights', f'{nope}.pth'],
                            f'--weights {nope}.pth: no such file, and not a published model name'),
        'export': (['export', '--weights', f'{nope}.pth', '--onnx', str(tmp / 'x.onnx')],
                   f'--weights {nope}.pth: no such file'),
        'bench': (['bench', '--weights', f'{nope}.pth'], f'--weights {nope}.pth: no such file'),
        'convert': (['convert', f'{nope}.pth', str(tmp / 'x.safetensors')], f'{nope}.pth: no such file'),
        'mm-train': (['mm-train', f'{nope}.py'], f'config file not found: {nope}.py'),
        'mm-test (config)': (['mm-test', f'{nope}.py', '--checkpoint', f'{nope}.pth'],
                             f'config file not found: {nope}.py'),
    }


@pytest.mark.parametrize('case', list(missing_input_cases(Path('/x'))))
def test_every_command_reports_a_missing_input_in_one_line_with_status_2(case, tmp_path, capsys, monkeypatch):
    import cv2
    import numpy as np
    cv2.imwrite(str(tmp_path / 'x.png'), np.zeros((8, 8, 3), np.uint8))
    monkeypatch.chdir(tmp_path)
    argv, text = missing_input_cases(tmp_path)[case]
    assert main(argv, prog='ramit') == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f'ramit {argv[0]}: error: ') and text in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['x.png']  # nothing was created


def test_mm_test_missing_checkpoint_is_reported_before_the_runner_starts(tmp_path, capsys, monkeypatch):
    import cv2
    import numpy as np
    from ramit_plugin.resources import option_file
    set5 = tmp_path / 'Set5'
    for sub, name, size in (('HR', 'baby.png', 8), ('LR_bicubic/X2', 'babyx2.png', 4)):
        (set5 / sub).mkdir(parents=True)
        cv2.imwrite(str(set5 / sub / name), np.zeros((size, size, 3), np.uint8))
    monkeypatch.chdir(tmp_path)
    assert main(['mm-test', str(option_file('mmengine_RAMiT_SRx2.py')), '--checkpoint', 'nope.pth',
                 '--cfg-options', f'test_dataloader.dataset.data_root={set5}'], prog='ramit') == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('ramit mm-test: error: ')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['Set5']  # no work_dirs/


def test_threads_option_of_every_long_running_command():
    for name in ('train', 'test', 'infer', 'mm-train', 'mm-test', 'demo', 'bench'):
        actions = {a.dest: a for a in COMMANDS[name].parser(f'ramit {name}')._actions}
        assert 'threads' in actions and actions['threads'].type is parsers.positive_int, name
    with pytest.raises(SystemExit):
        COMMANDS['infer'].parser('ramit infer').parse_args(['-i', 'a', '-o', 'b', '--weights', 'w', '--threads', '0'])


def test_set_threads_sets_torch_opencv_and_child_processes():
    code = ('import os, cv2, torch; from ramit_plugin.cli.runtime import set_threads; set_threads(3); '
            "print(torch.get_num_threads(), cv2.getNumThreads(), os.environ['OMP_NUM_THREADS'])")
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.stdout.split() == ['3', '3', '3'], proc.stderr
