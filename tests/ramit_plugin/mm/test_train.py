"""`ramit mm-train`: a tiny RAMiT trains with mmengine's Runner: saves, resumes, keeps an EMA, compiles, stops on a
non-finite loss, and shows its users none of mmengine's own deprecation notices (2 ranks: test_configs.py)."""
import json
import math
import re
import time

import psutil
import pytest
import torch
import torch.distributed as dist
from basicsr.losses.basic_loss import L1Loss
from mmengine.logging import MessageHub

from ramit.checkpoint import read_checkpoint
from ramit_cli.main import main
from ramit_plugin.mm.runtime import wait_for_own_log_dir
from tests.ramit_plugin.mm.conftest import error_line, generator_weights, names, runner_checkpoint, scalars


def test_train_20_iterations_saves_and_resumes_at_the_right_iteration(tiny_run):
    """The shared run: 10 iterations, then --resume to 20 (see conftest's tiny_run)."""
    work_dir = tiny_run.work_dir
    checkpoint = work_dir / 'iter_10.pth'
    # mmengine itself loads them with torch.load's weights_only default; so must anyone else.
    assert runner_checkpoint(checkpoint)['meta']['iter'] == 10
    assert (work_dir / 'last_checkpoint').read_text().strip() == str(work_dir / 'iter_20.pth')
    records = scalars(work_dir)
    assert [r['iter'] for r in records] == list(range(1, 21))  # the resumed run logged 11..20, nothing twice
    lrs = {r['iter']: r['lr'] for r in records}
    # Warm-up 1e-3 -> 2e-3 over 5 iterations, halved after 15: the restored schedulers continue, not restart.
    assert (lrs[1], lrs[11], lrs[15], lrs[16], lrs[20]) == (1e-3, 2e-3, 2e-3, 1e-3, 1e-3)
    losses = [r['loss'] for r in records]
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    final = runner_checkpoint(work_dir / 'iter_20.pth')
    assert final['meta']['iter'] == 20
    assert set(final['message_hub']['log_scalars']) >= {'train/loss', 'train/lr'}


def test_mmengine_file_client_deprecations_are_not_shown(tiny_run):
    """mmengine 0.10.7 logs '"FileClient" will be deprecated ...' and '"HardDiskBackend" is the alias ...' whenever
    its CheckpointHook starts (its own code's notices, nothing a user can change): neither the console nor the log
    files show them, and no Python warning about them escapes."""
    assert (tiny_run.work_dir / 'iter_10.pth').is_file()  # the checkpoint code that logs them ran
    logs = [path.read_text() for path in tiny_run.work_dir.glob('*/*.log')]
    assert len(logs) == 2 and all('Iter(train)' in log for log in logs)
    assert 'Iter(train) [20/20]' in tiny_run.output  # the console output of both runs was captured
    for text in [tiny_run.output, *logs, *tiny_run.warnings]:
        assert not re.search(r'FileClient|HardDiskBackend|file_client', text)


def test_a_run_starts_in_a_second_without_a_log_folder(tmp_path):
    """The Runner names a run's log folder by the second it starts: a run within the second of the one before it
    waits for the next (the two runs above, 20 fast iterations, would otherwise share one folder)."""
    taken = {time.strftime('%Y%m%d_%H%M%S', time.localtime(time.time() + k)) for k in (0, 1)}
    for name in taken:
        (tmp_path / name).mkdir()
    wait_for_own_log_dir(str(tmp_path))
    assert time.strftime('%Y%m%d_%H%M%S') not in taken


def test_ema_option_validates_saves_and_tests_the_averaged_weights(tmp_path, tiny_config, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = str(tiny_config(4))
    work_dir = tmp_path / 'work'
    assert main(['mm-train', config, '--work-dir', str(work_dir), '--cfg-options', 'default_hooks.ema.type=EMAHook',
                 'default_hooks.ema.momentum=0.5', 'default_hooks.checkpoint.interval=4'], prog='ramit') == 0
    checkpoint = work_dir / 'iter_4.pth'
    saved = runner_checkpoint(checkpoint)
    # mmengine's EMAHook saves the averaged weights as 'state_dict' and the raw ones under 'ema_state_dict'.
    ema, raw = generator_weights(saved), generator_weights(saved, 'ema_state_dict')
    assert ema.keys() == raw.keys() and any(not torch.equal(ema[k], raw[k]) for k in ema)
    loaded = read_checkpoint(checkpoint).weights
    assert loaded.keys() == ema.keys() and all(torch.equal(loaded[k], ema[k]) for k in ema)

    def mm_test(weights) -> float:
        argv = [config, '--checkpoint', str(weights), '--work-dir', str(tmp_path / 'test')]
        assert main(['mm-test', *argv], prog='ramit') == 0
        return float(capsys.readouterr().out.split('PSNR: ')[-1].split()[0])

    # Validation at iteration 4 ran the EMA weights: `ramit mm-test` on the checkpoint reproduces its PSNR, and the
    # raw weights score differently.
    scalars = next(work_dir.glob('*/vis_data/scalars.json')).read_text().splitlines()
    val_psnr = next(r['PSNR'] for r in map(json.loads, scalars) if 'PSNR' in r)
    assert mm_test(checkpoint) == pytest.approx(val_psnr, abs=1e-4)
    torch.save(raw, tmp_path / 'raw.pth')
    assert abs(mm_test(tmp_path / 'raw.pth') - val_psnr) > 1e-3


def test_loader_workers_end_with_the_run_persistent_or_not(tmp_path, tiny_config, monkeypatch):
    """Non-persistent workers live in the training loop's own iterator, not the DataLoader: they end with the run too
    (the persistent ones: test_exact_resume.py), instead of at a later garbage collection that waits 5 s for each."""
    monkeypatch.chdir(tmp_path)
    assert main(['mm-train', str(tiny_config(4)), '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                 'train_dataloader.num_workers=2', 'train_dataloader.persistent_workers=False'], prog='ramit') == 0
    assert not psutil.Process().children()


def test_launched_commands_close_their_process_group_done_or_failed(tmp_path, tiny_config, tiny_weights,
                                                                    one_process_launch, capsys):
    """`--launcher pytorch` opens a gloo process group; each command destroys it before returning, also after a
    failure. Left to interpreter exit, gloo's threads could abort a process whose run had succeeded (SIGABRT)."""
    config = str(tiny_config(2))
    launched = ['--launcher', 'pytorch', '--work-dir', str(tmp_path / 'work')]
    assert main(['mm-train', config, *launched]) == 0
    assert not dist.is_initialized()
    assert main(['mm-test', config, '--checkpoint', str(tiny_weights), *launched]) == 0
    assert not dist.is_initialized()
    # Failing after the group opened: the data folder is gone.
    missing = ['--cfg-options', f"train_dataloader.dataset.data_root={tmp_path / 'gone'}"]
    capsys.readouterr()
    assert main(['mm-train', config, *launched, *missing]) == 2
    assert 'gone' in error_line(capsys)
    assert not dist.is_initialized()


def test_compiled_training_forward_keeps_plain_checkpoints(tmp_path, tiny_config, monkeypatch,
                                                           compile_without_inductor):
    """model.compile=True: the tiny run trains through torch.compile and saves the generator under its plain keys.

    Dynamo traces the whole network (fullgraph) and AOTAutograd splits forward and backward as in any compiled run;
    only Inductor's code generation is swapped for eager kernels (backend 'aot_eager'), which on a CPU takes minutes
    and is torch's own business (the BasicSR compile test runs it).
    """
    monkeypatch.chdir(tmp_path)
    calls = compile_without_inductor
    work_dir = tmp_path / 'work'
    assert main(['mm-train', str(tiny_config(4)), '--work-dir', str(work_dir), '--cfg-options',
                 'model.compile=True', 'default_hooks.checkpoint.interval=4'], prog='ramit') == 0
    assert calls == [dict(mode='default', fullgraph=True, dynamic=False)]  # once: one patch size
    log = next(work_dir.glob('*/*.log')).read_text()
    assert 'model.compile: training forward compiled with torch.compile (mode auto: default)' in log  # on the CPU
    state = runner_checkpoint(work_dir / 'iter_4.pth')['state_dict']
    assert not any('_orig_mod' in key for key in state) and 'generator.shallow.conv.weight' in state
    assert [r['iter'] for r in scalars(work_dir) if math.isfinite(r['loss'])] == [1, 2, 3, 4]


def test_non_finite_loss_stops_before_the_step_and_names_the_last_good_checkpoint(tmp_path, tiny_config,
                                                                                  monkeypatch, capsys):
    """The loss of iteration 12 of 20 turns NaN (checkpoints and validations every 10): exit 1, one line naming
    iter_10.pth, and nothing the NaN reached is saved (no iter_20.pth, no best checkpoint past 10)."""
    monkeypatch.chdir(tmp_path)
    pixel_loss = L1Loss.forward

    def diverging(self, pred, target, **kwargs):
        loss = pixel_loss(self, pred, target, **kwargs)
        # The Runner records the finished iterations: 11 finished means iteration 12 runs.
        return loss * math.nan if MessageHub.get_current_instance().get_info('iter') == 11 else loss

    monkeypatch.setattr(L1Loss, 'forward', diverging)
    work_dir = tmp_path / 'work'
    assert main(['mm-train', str(tiny_config(20)), '--work-dir', str(work_dir), '--cfg-options',
                 'train_cfg.val_interval=10'], prog='ramit') == 1
    assert error_line(capsys) == (
        f'ramit mm-train: error: training stopped at iter 12: loss pixel_loss is nan; nothing was saved for this '
        f'iteration; the last good checkpoint is {work_dir}/iter_10.pth (iteration 10; resume with ramit mm-train '
        '... --resume)')
    saved = [name for name in names(work_dir) if name.endswith('.pth')]
    assert saved == ['best_PSNR_iter_10.pth', 'iter_10.pth']
    assert (work_dir / 'last_checkpoint').read_text().strip() == str(work_dir / 'iter_10.pth')
    for name in saved:
        assert all(torch.isfinite(w).all() for w in generator_weights(runner_checkpoint(work_dir / name)).values())
    # The step of iteration 12 never happened: iteration 11 was the last one logged.
    assert [r['iter'] for r in scalars(work_dir)][-1] == 11
