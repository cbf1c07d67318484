"""RAMiTModel: BasicSR's SRModel with the paper's evaluation protocol and the training options the recipe needs.

On top of SRModel: validation/test through `protocol_forward` (symmetric padding to the network's pad_unit, crop back),
the authors' raw checkpoints and BasicSR checkpoints in `path.pretrain_network_g`, warm start for x3/x4
(`train.warm_start_iter`), several weighted losses (every `train.*_opt`), AdamW, gradient clipping, bf16/fp16
autocast, torch.compile of the training step (`train.compile`), progressive patches (`train.progressive`), a stop
on NaN/inf losses, atomic checkpoint writes (plus a .safetensors copy with `logger.save_safetensors`), CPU-capable
DDP wrapping, and exact resume: training states hold every process's random state (restored right before the first
resumed iteration) and the run's seed, and validation leaves the training's random draws untouched. Test outputs
with NaN/inf values stop the run before anything of them is written.
"""
import contextlib
import time
from collections import OrderedDict
from os import path as osp
from typing import Dict, Iterable, Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.models.base_model import BaseModel
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import MODEL_REGISTRY

from ..basicsr_compat import latest_checkpoint
from ..checkpoint import (METADATA_KEY, config_metadata, load_checkpoint, mismatched_keys, read_checkpoint,
                          select_state_dict, write_safetensors)
from ..compilation import CompiledTraining, cache_report, compile_options
from ..errors import RunError
from ..fileio import atomic_output
from ..precision import amp_dtype
from ..protocol import protocol_forward
from ..random_state import capture_all_ranks, preserved, restore_own_rank
from .progressive import ProgressiveSchedule, crop_batch, stage_message

OPTIMIZERS = {'Adam': torch.optim.Adam, 'AdamW': torch.optim.AdamW}
WARM_START_TRAINED = 'to_target.'  # the only part trained during a warm start (scale-specific reconstruction)


class NonFiniteLossError(RunError, RuntimeError):
    """A loss became NaN or inf: training stops before the optimizer step, no checkpoint is written."""


class NonFiniteOutputError(RunError, RuntimeError):
    """The network's output for an image has NaN or inf values (damaged weights): nothing of it is written."""


def atomic_torch_save(obj: object, path: str) -> None:
    """torch.save to a hidden temp file beside ``path``, then rename: an interrupted save leaves ``path`` intact."""
    with atomic_output(path) as tmp, open(tmp, 'wb') as f:
        torch.save(obj, f)


@MODEL_REGISTRY.register()
class RAMiTModel(SRModel):
    """SRModel for RAMiT: reference-protocol validation plus warm start, AMP, AdamW, multi-loss, progressive."""

    def __init__(self, opt: dict):
        BaseModel.__init__(self, opt)  # SRModel.__init__ is replaced: loading must precede DDP and honour warm start
        train_opt = opt.get('train') or {}
        self.warm_start_iter = int(train_opt.get('warm_start_iter') or 0) if self.is_train else 0
        # A resumed run's pretrain_network_g is its own full checkpoint (set by basicsr's check_resume).
        self.warm_loading = self.warm_start_iter > 0 and not opt['path'].get('resume_state')
        self.net_g = build_network(opt['network_g'])
        self.load_pretrained_g(self.net_g, opt['path'].get('param_key_g', 'params'))
        self.net_g = self.model_to_device(self.net_g)
        self.print_network(self.net_g)
        self.lq_path: Optional[str] = None
        self._saved_random_state: Optional[list] = None
        self._pending_random_state: Optional[list] = None
        if self.is_train:
            self.init_training_settings()

    # ----------------------------------------------------------------------------------------- loading / devices
    def load_pretrained_g(self, net: nn.Module, param_key: Optional[str]) -> None:
        """Load path.pretrain_network_g (if set) into ``net``, leaving to_target.* out for a warm start."""
        load_path = self.opt['path'].get('pretrain_network_g')
        if load_path is None:
            return
        self.load_network(net, load_path, self.opt['path'].get('strict_load_g', True), param_key,
                          exclude=(WARM_START_TRAINED,) if self.warm_loading else ())

    def load_network(self, net: nn.Module, load_path: str, strict: bool = True, param_key: Optional[str] = 'params',
                     exclude: Iterable[str] = ()) -> None:
        """Load on the CPU with weights_only (no CUDA mapping), raw or BasicSR checkpoints, one-line errors."""
        logger = get_root_logger()
        exclude = tuple(exclude)
        bare = self.get_bare_model(net)
        sd, _ = read_checkpoint(load_path, param_key)
        skipped = [] if strict else [p for p in mismatched_keys(bare.state_dict(), sd) if not p.startswith(exclude)]
        load_checkpoint(bare, sd, exclude, strict, label=load_path)
        note = f'; warm start: {", ".join(exclude)}* kept at initialisation' if exclude else ''
        logger.info(f'Loading {type(bare).__name__} from {load_path} (param key {param_key}{note}).')
        if skipped:
            logger.warning(f'strict_load_g is false: {len(skipped)} missing or mis-shaped keys not loaded, e.g. '
                           f'{skipped[0]}')

    def model_to_device(self, net: nn.Module) -> nn.Module:
        """Move to the device; DDP without CUDA device_ids when training on CPUs (gloo)."""
        net = net.to(self.device)
        if self.opt['dist']:
            device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
            return DistributedDataParallel(net, device_ids=device_ids,
                                           find_unused_parameters=self.opt.get('find_unused_parameters', False))
        if self.opt['num_gpu'] > 1:
            return DataParallel(net)
        return net

    # ------------------------------------------------------------------------------------------ training set-up
    def init_training_settings(self) -> None:
        """EMA, losses, AMP, clipping, progressive schedule, warm start, optimizers and schedulers."""
        self.net_g.train()
        train_opt = self.opt['train']
        logger = get_root_logger()
        self.ema_decay = train_opt.get('ema_decay', 0)
        if self.ema_decay > 0:
            logger.info(f'Use Exponential Moving Average with decay: {self.ema_decay}')
            # Only used for validation and saving, so it is never wrapped in DDP.
            self.net_g_ema = build_network(self.opt['network_g']).to(self.device)
            self.model_ema(0)
            if not self.warm_loading:
                self.load_pretrained_g(self.net_g_ema, 'params_ema')
            self.net_g_ema.eval()

        self.losses = OrderedDict((name, loss.to(self.device)) for name, loss in build_losses(train_opt).items())
        self.grad_clip = float(train_opt.get('grad_clip') or 0)
        self.amp_dtype, self.scaler = self._setup_amp(train_opt.get('amp'))
        self.progressive = None
        if train_opt.get('progressive'):
            data_opt = self.opt['datasets']['train']
            self.progressive = ProgressiveSchedule.from_options(
                train_opt['progressive'], data_opt['gt_size'], data_opt['batch_size_per_gpu'], self.opt.get('scale', 1))
        self._stage: Optional[int] = None
        self._frozen = False
        bare = self.get_bare_model(self.net_g)
        self.frozen_params = [p for n, p in bare.named_parameters() if not n.startswith(WARM_START_TRAINED)]
        self._setup_compile(train_opt.get('compile'))
        self.setup_optimizers()
        self.setup_schedulers()

    def _setup_compile(self, option) -> None:
        """``train.compile``: the training forward runs compiled; net_g itself (saved, validated) stays plain.

        Training patches have one size per progressive stage, so shapes are static and, on one CUDA device, the
        'auto' mode records CUDA graphs. Validation images vary in size and stay uncompiled.
        """
        options = compile_options(option, 'train:compile')
        self._compile_pending = options is not None
        self.train_forward = self.net_g
        if options is not None:
            self.train_forward = CompiledTraining(self.net_g, self.device, options['mode'], self.opt['dist'])
            get_root_logger().info(f'train:compile: training forward compiled with torch.compile (mode '
                                   f'{self.train_forward.label}); the first iteration includes the compilation')

    def _setup_amp(self, amp: Optional[str]):
        """(autocast dtype or None, GradScaler or None) for train.amp = bf16 | fp16 | None."""
        dtype = amp_dtype(amp, 'train:amp')
        # The scaler keeps float16 gradients from underflowing; bfloat16 has float32's range and needs none.
        return dtype, torch.amp.GradScaler(self.device.type) if dtype == torch.float16 else None

    def get_optimizer(self, optim_type: str, params, lr: float, **kwargs) -> torch.optim.Optimizer:
        """Adam or AdamW (basicsr 1.4.2 knows only Adam)."""
        if optim_type not in OPTIMIZERS:
            raise ValueError(f"train:optim_g:type {optim_type!r} is not supported; valid: {', '.join(OPTIMIZERS)}")
        return OPTIMIZERS[optim_type](params, lr, **kwargs)

    # ------------------------------------------------------------------------------------------------ training
    def feed_data(self, data: dict) -> None:
        """SRModel's, remembering the input's file for messages."""
        super().feed_data(data)
        paths = data.get('lq_path')
        self.lq_path = paths[0] if isinstance(paths, (list, tuple)) and paths else paths

    def optimize_parameters(self, current_iter: int) -> None:
        """One step: warm-start phase, progressive crop, (autocast) forward, losses, finite check, step, EMA."""
        if self._pending_random_state is not None:
            self._restore_random_state(current_iter)
        self._update_warm_start(current_iter)
        if self.progressive is not None:
            self._progressive_crop(current_iter)
        self.optimizer_g.zero_grad(set_to_none=True)
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype
                    else contextlib.nullcontext())
        start = time.perf_counter()
        with autocast:
            self.output = self.train_forward(self.lq)
        output = self.output.float()  # losses in float32 whatever the autocast dtype

        loss_dict = OrderedDict()
        for name, criterion in self.losses.items():
            value = criterion(output, self.gt)
            parts = zip(('l_percep', 'l_style'), value) if isinstance(value, tuple) else [(name, value)]
            loss_dict.update((part, v) for part, v in parts if v is not None)
        l_total = sum(loss_dict.values())
        if len(loss_dict) > 1:
            loss_dict['l_total'] = l_total
        self._check_finite(loss_dict, current_iter)

        if self.scaler is not None:
            self.scaler.scale(l_total).backward()
        else:
            l_total.backward()
        if self._frozen:
            # Not only zero: Adam momentum or AdamW decay would still move them. A None grad skips the parameter.
            for p in self.frozen_params:
                p.grad = None
        if self.grad_clip > 0:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer_g)
            params = [p for p in self.net_g.parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer_g)
            self.scaler.update()
        else:
            self.optimizer_g.step()

        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
        if self._compile_pending:
            self._compile_pending = False
            get_root_logger().info(f'train:compile: first step took {time.perf_counter() - start:.1f} s; '
                                   f'{cache_report()}')

    def _update_warm_start(self, current_iter: int) -> None:
        """Freeze everything but to_target.* for iterations 1..warm_start_iter, then unfreeze; log the switch."""
        frozen = current_iter <= self.warm_start_iter
        if frozen == self._frozen:
            return
        self._frozen = frozen
        logger = get_root_logger()
        if frozen:
            total = sum(p.numel() for p in self.get_bare_model(self.net_g).parameters())
            kept = sum(p.numel() for p in self.frozen_params)
            logger.info(f'warm start: iter {current_iter} to {self.warm_start_iter} train only {WARM_START_TRAINED}* '
                        f'({total - kept:,d} of {total:,d} parameters); the rest stays as loaded')
        else:
            logger.info(f'warm start: iter {current_iter}: all parameters train from now on')
        if not self.opt['dist']:
            # Skipping the backward pass through the frozen body is the speed-up; DDP needs a fixed set of
            # gradient-requiring parameters, so there the gradients are only dropped before the step.
            for p in self.frozen_params:
                p.requires_grad_(not frozen)

    def _progressive_crop(self, current_iter: int) -> None:
        """Crop the delivered (largest) patches and batch to the stage of ``current_iter``; log stage changes."""
        stage = self.progressive.stage(current_iter)
        gt_size, batch = self.progressive.sizes(current_iter)
        if stage != self._stage:
            get_root_logger().info(stage_message(current_iter, gt_size, batch))
            self._stage = stage
        # Without DDP, basicsr multiplies the per-GPU batch by num_gpu (DataParallel).
        per_process = batch if self.opt['dist'] else batch * max(1, self.opt['num_gpu'])
        self.lq, self.gt = crop_batch(self.lq, self.gt, gt_size, per_process, self.opt.get('scale', 1))

    def _check_finite(self, loss_dict: Dict[str, torch.Tensor], current_iter: int) -> None:
        """Raise NonFiniteLossError (on every process) if any loss is NaN/inf, before anything is updated."""
        bad = [(name, v.detach().float().mean().item()) for name, v in loss_dict.items()
               if not torch.isfinite(v.detach()).all()]
        flag = torch.tensor(float(bool(bad)), device=self.device)
        if self.opt['dist']:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if not flag.item():
            return
        what = f'loss {bad[0][0]} is {bad[0][1]}' if bad else 'a loss is not finite on another process'
        raise NonFiniteLossError(f'training stopped at iter {current_iter}: {what}; nothing was saved for this '
                                 f'iteration; {self._last_checkpoint_note()}')

    def _last_checkpoint_note(self) -> str:
        """Where the last good checkpoint is, for the NaN message."""
        found = latest_checkpoint(self.opt['path']['models'], self.opt['path']['training_states'])
        if not found:
            return 'no checkpoint had been saved yet'
        return f'the last good checkpoint is {found[1]} (resume with --auto_resume)'

    def _restore_random_state(self, current_iter: int) -> None:
        """Put every generator back where the run being resumed had it after its last saved iteration."""
        states, self._pending_random_state = self._pending_random_state, None
        if not restore_own_rank(states):
            get_root_logger().warning(f'resume: the state holds the random state of {len(states)} process(es), this '
                                      f'run has another number; iteration {current_iter} on draws from the seed')

    # ------------------------------------------------------------------------------------------------ testing
    def test(self) -> None:
        """Reference protocol: symmetric pad to the network's pad_unit, run (EMA net if any), crop to (H*s, W*s)."""
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        bare = self.get_bare_model(net)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            self.output = protocol_forward(bare, self.lq)
        net.train(was_training)
        if not torch.isfinite(self.output).all():
            weights = ('the network being trained' if self.is_train
                       else self.opt['path'].get('pretrain_network_g') or 'the network')
            raise NonFiniteOutputError(f'{self.lq_path or "an input"}: the output has NaN or inf values (weights: '
                                       f'{weights}); stopped before writing any image or metric for it')

    def validation(self, dataloader, current_iter: int, tb_logger, save_img: bool) -> None:
        """SRModel's validation, leaving the random state as it was: training draws the same numbers with or
        without a validation in between (so a resumed run matches the uninterrupted one)."""
        with preserved(cuda=True):
            super().validation(dataloader, current_iter, tb_logger, save_img)

    # ------------------------------------------------------------------------------------------------- saving
    def save(self, epoch: int, current_iter: int) -> None:
        """SRModel's save, with every process's random state gathered first (a collective in DDP runs)."""
        self._saved_random_state = capture_all_ranks()
        super().save(epoch, current_iter)

    @master_only
    def save_network(self, net, net_label: str, current_iter: int, param_key='params') -> None:
        """Save (EMA) weights as BasicSR does ({param_key: state_dict}), atomically; with ``logger.save_safetensors``
        also the weights inference uses (EMA first) and the network description as ``<same name>.safetensors``."""
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        save_dict = {key: {k: v.cpu() for k, v in self.get_bare_model(n).state_dict().items()}
                     for n, key in zip(nets, keys)}
        # What shapes cannot show (the task of a scale-1 model, helper, img_norm), for `ramit infer` to read back.
        save_dict[METADATA_KEY] = config_metadata(self.get_bare_model(nets[0]))
        label = 'latest' if current_iter == -1 else current_iter
        stem = osp.join(self.opt['path']['models'], f'{net_label}_{label}')
        atomic_torch_save(save_dict, f'{stem}.pth')
        if (self.opt.get('logger') or {}).get('save_safetensors'):
            write_safetensors(f'{stem}.safetensors', select_state_dict(save_dict), save_dict[METADATA_KEY])

    @master_only
    def save_training_state(self, epoch: int, current_iter: int) -> None:
        """Save optimizer/scheduler (and fp16 GradScaler) state, the seed and the random state, atomically."""
        if current_iter == -1:
            return
        state = {'epoch': epoch, 'iter': current_iter, 'optimizers': [o.state_dict() for o in self.optimizers],
                 'schedulers': [s.state_dict() for s in self.schedulers], 'manual_seed': self.opt.get('manual_seed'),
                 'random_state': self._saved_random_state}
        if self.scaler is not None:
            state['scaler'] = self.scaler.state_dict()
        atomic_torch_save(state, osp.join(self.opt['path']['training_states'], f'{current_iter}.state'))

    def resume_training(self, resume_state: dict) -> None:
        """Restore optimizers, schedulers and the fp16 GradScaler; the random state at the next iteration."""
        super().resume_training(resume_state)
        if self.scaler is not None and 'scaler' in resume_state:
            self.scaler.load_state_dict(resume_state['scaler'])
        self._pending_random_state = resume_state.get('random_state')


def build_losses(train_opt: dict) -> 'OrderedDict[str, nn.Module]':
    """Every ``train.<name>_opt`` mapping is a weighted loss from LOSS_REGISTRY, logged as l_<name> (l_pix)."""
    losses = OrderedDict()
    for key, spec in train_opt.items():
        if not key.endswith('_opt') or not spec:
            continue
        if not isinstance(spec, dict) or 'type' not in spec:
            raise ValueError(f'train:{key}: a loss needs a mapping with a type, got {spec!r}')
        name = 'l_pix' if key == 'pixel_opt' else f'l_{key[:-len("_opt")]}'
        losses[name] = build_loss(dict(spec))
    if not losses:
        raise ValueError('train: no loss configured; add e.g. pixel_opt: {type: L1Loss, loss_weight: 1.0}')
    return losses
