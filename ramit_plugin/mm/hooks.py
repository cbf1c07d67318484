"""Training hooks in mmengine's HOOKS: the x3/x4 warm start of the paper's recipe."""
from typing import List, Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ..models.ramit_model import WARM_START_TRAINED
from ..registry import HOOKS


@HOOKS.register_module()
class WarmStartHook(Hook):
    """Train only ``to_target.*`` for the first ``iters`` iterations, then everything (x3/x4 from an x2 model).

    It is BasicSR's ``train.warm_start_iter``: pair it with ``model.pretrained`` (the x2 model) and
    ``model.pretrained_exclude=('to_target.',)``. During the phase every other generator weight keeps the loaded
    value bit for bit: its gradient is None, not zero, so neither Adam's moments nor AdamW's weight decay move it.
    Without DDP those weights stop requiring gradients (the backward pass ends at the head); DDP fixes the set of
    gradient-requiring parameters when it wraps the model, so there the gradients are dropped right before each
    optimizer step instead (with ``clip_grad`` they still count in that iteration's clipping norm).
    """

    priority = 'NORMAL'

    def __init__(self, iters: int) -> None:
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
            raise ValueError(f'WarmStartHook: iters must be a whole number of iterations >= 0, got {iters!r}')
        self.iters = iters
        self.frozen: List[torch.nn.Parameter] = []
        self.active = False
        self.wrapped = False

    def before_train(self, runner) -> None:
        """Collect the generator weights outside to_target.* and hook the optimizer step."""
        self.wrapped = is_model_wrapper(runner.model)
        model = runner.model.module if self.wrapped else runner.model
        self.frozen = [p for name, p in model.generator.named_parameters() if not name.startswith(WARM_START_TRAINED)]
        runner.optim_wrapper.optimizer.register_step_pre_hook(self._drop_frozen_grads)

    def before_train_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        """Start or end the head-only phase: iterations 1..iters (runner.iter counts the finished ones)."""
        active = runner.iter < self.iters
        if active == self.active:
            return
        self.active = active
        if active:
            total = sum(p.numel() for p in runner.model.parameters())
            kept = sum(p.numel() for p in self.frozen)
            print_log(f'warm start: iter {runner.iter + 1} to {self.iters} train only {WARM_START_TRAINED}* '
                      f'({total - kept:,d} of {total:,d} parameters); the rest stays as loaded', logger='current')
        else:
            print_log(f'warm start: iter {runner.iter + 1}: all parameters train from now on', logger='current')
        self._set_requires_grad(not active)

    def after_train(self, runner) -> None:
        """Leave the model trainable as a whole, whatever iteration the run stopped at."""
        self._set_requires_grad(True)
        self.active = False

    def _set_requires_grad(self, flag: bool) -> None:
        if not self.wrapped:
            for p in self.frozen:
                p.requires_grad_(flag)

    def _drop_frozen_grads(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        """Optimizer step pre-hook: no gradient, hence no update, for the frozen weights during the phase."""
        if self.active:
            for p in self.frozen:
                p.grad = None
