"""Training hooks in mmengine's HOOKS: the x3/x4 warm start of the paper's recipe, and exact resume.

Both are thin: the warm start and the random-state handling are ``ramit.training``'s, shared with BasicSR's
RAMiTModel.
"""
import logging
from typing import Optional

import torch.distributed as dist
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ramit.errors import OptionError
from ramit.training import WarmStart, capture_rng, rng_of_all_ranks, same_weights_everywhere, set_own_rng, set_rng

from ..registry import HOOKS


@HOOKS.register_module()
class WarmStartHook(Hook):
    """Train only ``to_target.*`` for the first ``iters`` iterations, then everything (x3/x4 from an x2 model).

    It is BasicSR's ``train.warm_start_iter`` (``ramit.training.WarmStart``): pair it with ``model.pretrained``
    (the x2 model) and ``model.pretrained_exclude=('to_target.',)``. During the phase every other generator weight
    keeps the loaded value bit for bit (its gradient is None, not zero); under DDP the gradients are dropped right
    before each optimizer step (with ``clip_grad`` they still count in that iteration's clipping norm).
    """

    priority = 'NORMAL'

    def __init__(self, iters: int) -> None:
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
            raise OptionError(f'WarmStartHook: iters must be a whole number of iterations >= 0, got {iters!r}')
        self.iters = iters
        self.warm_start: Optional[WarmStart] = None

    def before_train(self, runner) -> None:
        """Collect the generator weights outside to_target.* and hook the optimizer step."""
        wrapped = is_model_wrapper(runner.model)
        model = runner.model.module if wrapped else runner.model
        self.warm_start = WarmStart(model.generator, self.iters, wrapped,
                                    lambda line: print_log(line, logger='current'))
        runner.optim_wrapper.optimizer.register_step_pre_hook(lambda *args: self.warm_start.drop_frozen_grads())

    def before_train_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        """Start or end the head-only phase (runner.iter counts the finished iterations)."""
        self.warm_start.update(runner.iter + 1)

    def after_train(self, runner) -> None:
        """Leave the model trainable as a whole, whatever iteration the run stopped at."""
        self.warm_start.set_requires_grad(True)
        self.warm_start.active = False


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Exact resume: checkpoints hold every process's random state (Python, NumPy, torch CPU and CUDA), restored
    right before the first iteration of a resumed run; validation leaves the training's random state as it was.

    With per-sample seeds for the augmentation (SeededInfiniteSampler) a run resumed with ``--resume`` is the
    uninterrupted run. ``ramit mm-train`` adds the hook when the config does not list it.
    """

    # Before CheckpointHook (VERY_LOW) in after_train_iter.
    priority = 'LOW'

    def __init__(self) -> None:
        self.pending: Optional[tuple] = None  # (iteration, states) of the checkpoint being resumed
        self.outside_val: Optional[dict] = None  # the state validation started from
        self.gathered: Optional[tuple] = None  # (iteration, states of every process) in distributed runs

    def after_train_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None, outputs=None) -> None:
        """In a distributed run, gather every process's state where a CheckpointHook is about to save.

        Runner.save_checkpoint runs in the first process only, so the gathering (a collective) happens here, on
        CheckpointHook.after_train_iter's own condition. They are kept for the iteration's checkpoint, which
        CheckpointHook saves again after a validation that found a new best score.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook) and not hook.by_epoch and (
                    hook.every_n_train_iters(runner, hook.interval, hook.save_begin)
                    or (hook.save_last and hook.is_last_train_iter(runner))):
                self.gathered = (runner.iter + 1, rng_of_all_ranks())
                model = runner.model.module if is_model_wrapper(runner.model) else runner.model
                processes = same_weights_everywhere(model, f'iteration {runner.iter + 1}')
                print_log(f'weights identical on all {processes} processes', logger='current')
                return

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the random state of every process (as training left it, also for a save during validation)."""
        if self.gathered is not None and self.gathered[0] == checkpoint.get('meta', {}).get('iter'):
            checkpoint['random_state'] = self.gathered[1]
        else:
            checkpoint['random_state'] = [self.outside_val or capture_rng()]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the loaded random state until the first training iteration (a resume skips data before it)."""
        states = checkpoint.get('random_state')
        self.pending = (checkpoint.get('meta', {}).get('iter'), states) if states else None

    def before_train_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        """Restore the state of a resumed checkpoint (not of weights loaded with load_from) once."""
        if self.pending is None:
            return
        (saved_iter, states), self.pending = self.pending, None
        if runner.iter == saved_iter and not set_own_rng(states):
            print_log(f'resume: the checkpoint holds the random state of {len(states)} process(es), this run has '
                      'another number; random draws continue from the seed', logger='current', level=logging.WARNING)

    def before_val(self, runner) -> None:
        """Remember the training's random state."""
        self.outside_val = capture_rng()

    def after_val(self, runner) -> None:
        """Put the training's random state back."""
        if self.outside_val is not None:
            set_rng(self.outside_val)
            self.outside_val = None
