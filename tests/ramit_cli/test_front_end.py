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

HEAVY = ('torch', 'basicsr', 'mmengine', 'cv2', 'numpy', 'ramit_plugin', 'spandrel', 'onnxruntime', 'PIL')
HELP_CALLS = [(['--help'], 'ramit'), (['infer', '--help'], 'ramit'), (['--help'], 'basicsr'),
              (['train', '--help'], 'basicsr'), (['test', '--help'], 'ramit'), (['mm-train', '--help'], 'ramit'),
              (['hook', '--help'], 'ramit'), (['export', '--help'], 'ramit')]


def help_text(capsys, *argv: str) -> str:
    """The help `ramit ARGV --help` prints, whitespace collapsed (argparse wraps lines at the terminal width)."""
    with pytest.raises(SystemExit) as exit_:
        main([*argv, '--help'], prog='ramit')
    assert exit_.value.code == 0
    return ' '.join(capsys.readouterr().out.split())


def test_help_imports_neither_torch_nor_basicsr():
    """One fresh interpreter answers every --help of HELP_CALLS and reports, after each, the heavy modules it has
    imported so far (all should stay empty)."""
    code = textwrap.dedent('''
        import contextlib, io, json, sys
        from ramit_cli.main import main
        heavy = set(json.loads(sys.argv[2]))
        report = []
        for argv, prog in json.loads(sys.argv[1]):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                try:
                    main(argv, prog)
                except SystemExit as exit_:
                    assert exit_.code in (0, None), exit_.code
            report.append([argv, out.getvalue().startswith(f'usage: {prog}'),
                           sorted({m.split('.')[0] for m in sys.modules} & heavy)])
        print(json.dumps(report))
    ''')
    proc = subprocess.run([sys.executable, '-c', code, json.dumps(HELP_CALLS), json.dumps(HEAVY)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [(argv, usage, heavy) for argv, usage, heavy in report] == [(argv, True, []) for argv, _ in HELP_CALLS]


def test_console_scripts_and_module_run_the_front_end(tmp_path):
    bin_dir = Path(sys.executable).parent
    for cmd in ([str(bin_dir / 'ramit'), '--help'], [str(bin_dir / 'basicsr'), '--help'],
                [sys.executable, '-m', 'ramit_cli', '--help']):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert proc.returncode == 0 and 'mm-train' in proc.stdout and 'hook' in proc.stdout, cmd
    proc = subprocess.run([str(bin_dir / 'basicsr')], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith('usage: basicsr <command>')
    # A usage error of the console script: status 2, one line naming the script and the command.
    proc = subprocess.run([str(bin_dir / 'ramit'), 'infer', '-i', 'nope.png', '-o', 'o', '--weights', 'w.pth'],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == 'ramit infer: error: -i nope.png: no such file, folder or matching images\n'
    assert list(tmp_path.iterdir()) == []


def test_parser_choices_agree_with_the_network():
    from ramit.compilation import MODES
    from ramit.hparams import COMPILE_MODES, TASKS, VARIANTS

    for name in ('infer', 'export', 'convert', 'bench'):
        actions = {a.dest: a for a in COMMANDS[name].parser(f'ramit {name}')._actions}
        assert tuple(actions['variant'].choices) == tuple(VARIANTS), name
        assert tuple(actions['task'].choices) == tuple(TASKS), name
    actions = {a.dest: a for a in COMMANDS['infer'].parser('ramit infer')._actions}
    assert tuple(actions['compile'].choices) == tuple(COMPILE_MODES) == tuple(MODES)


def test_top_level_help_lists_every_command_and_test_help_has_no_training_text(capsys):
    assert main(['--help'], prog='ramit') == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith('  ')]
    assert listed == list(COMMANDS) and 'hook' in listed
    test_help, train_help = help_text(capsys, 'test'), help_text(capsys, 'train')
    for text in ('validate every 8 iterations', 'distributed training', 'resume'):
        assert text in train_help.lower(), text  # so their absence below is not a matter of wrapping
        assert text not in test_help.lower(), text


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
                            f'--weights {nope}.pth: no such file'),
        'export': (['export', '--weights', f'{nope}.pth', '--onnx', str(tmp / 'x.onnx')],
                   f'--weights {nope}.pth: no such file'),
        'export (check image)': (['export', '--weights', f'{nope}.pth', '--onnx', str(tmp / 'x.onnx'),
                                  '--check-images', f'{nope}.png'], f'--check-images {nope}.png: no such file'),
        'bench': (['bench', '--weights', f'{nope}.pth'], f'--weights {nope}.pth: no such file'),
        'convert': (['convert', f'{nope}.pth', str(tmp / 'x.safetensors')], f'{nope}.pth: no such file'),
        'mm-train': (['mm-train', f'{nope}.py'], f'config file not found: {nope}.py'),
        'mm-test (config)': (['mm-test', f'{nope}.py', '--checkpoint', f'{nope}.pth'],
                             f'config file not found: {nope}.py'),
    }


@pytest.mark.parametrize('case', list(missing_input_cases(Path('/x'))))
def test_every_command_reports_a_missing_input_in_one_line_with_status_2(case, tmp_path, capsys, monkeypatch,
                                                                         image_file):
    image_file(tmp_path / 'x.png', 8, 8)
    monkeypatch.chdir(tmp_path)
    argv, text = missing_input_cases(tmp_path)[case]
    assert main(argv, prog='ramit') == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f'ramit {argv[0]}: error: ') and text in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['x.png']  # nothing was created


def test_mm_test_missing_checkpoint_is_reported_before_the_runner_starts(tmp_path, capsys, monkeypatch, image_file):
    config = Path(__file__).resolve().parents[2] / 'options' / 'mmengine_RAMiT_SRx2.py'
    set5 = tmp_path / 'Set5'
    for sub, name, size in (('HR', 'baby.png', 8), ('LR_bicubic/X2', 'babyx2.png', 4)):
        (set5 / sub).mkdir(parents=True)
        image_file(set5 / sub / name, size, size)
    monkeypatch.chdir(tmp_path)
    assert main(['mm-test', str(config), '--checkpoint', 'nope.pth',
                 '--cfg-options', f'test_dataloader.dataset.data_root={set5}'], prog='ramit') == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['ramit mm-test: error: --checkpoint nope.pth: no such file']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['Set5']  # no work_dirs/


def test_threads_option_of_every_long_running_command():
    for name in ('train', 'test', 'infer', 'mm-train', 'mm-test', 'demo', 'bench'):
        actions = {a.dest: a for a in COMMANDS[name].parser(f'ramit {name}')._actions}
        assert 'threads' in actions and actions['threads'].type is parsers.positive_int, name
    with pytest.raises(SystemExit):
        COMMANDS['infer'].parser('ramit infer').parse_args(['-i', 'a', '-o', 'b', '--weights', 'w', '--threads', '0'])


def test_set_threads_sets_torch_opencv_and_child_processes(monkeypatch):
    import cv2
    import torch

    from ramit_cli.runtime import set_threads

    monkeypatch.setenv('OMP_NUM_THREADS', '1')  # restored afterwards, as are torch's and OpenCV's below
    before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        set_threads(3)
        assert (torch.get_num_threads(), cv2.getNumThreads(), os.environ['OMP_NUM_THREADS']) == (3, 3, '3')
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
