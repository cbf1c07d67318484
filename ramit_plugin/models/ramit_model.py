"""RAMiTModel: BasicSR's SRModel with the paper's evaluation protocol and the training options the recipe needs.

On top of SRModel: validation/test through the protocol (symmetric padding to the network's pad_unit, crop back),
the authors' raw checkpoints, BasicSR checkpoints and safetensors files in `path.pretrain_network_g`, warm start for
x3/x4 (`train.warm_start_iter`), several weighted losses (every `train.*_opt`), AdamW, gradient clipping, bf16/fp16
autocast, torch.compile of the training step (`train.compile`), progressive patches (`train.progressive`), a memory
check before the first step, a stop on NaN/inf losses, atomic checkpoint writes (plus a .safetensors copy with
`logger.save_safetensors`), CPU-capable DDP wrapping, and exact resume: training states hold every process's random
state (restored right before the first resumed iteration) and the run's seed, and validation leaves the training's
random draws untouched. Test outputs with NaN/inf values stop the run before anything of them is written.
"""
import contextlib
import time
from collections import OrderedDict
from os import path as osp
from typing import Optional

import torch
import torch.nn as nn
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import MODEL_REGISTRY
from torch.nn.parallel import DataParallel, DistributedDataParallel

from ramit.checkpoint import (DESCRIPTION_KEY, load_weights, mismatched_keys, network_description, read_checkpoint,
                              save_torch, select_state_dict, write_safetensors)
from ramit.compilation import CompiledTraining, cache_report, compile_options
from ramit.errors import OptionError, RunError
from ramit.precision import amp_dtype
from ramit.protocol import protocol_forward
from ramit.training import (WARM_START_TRAINED, NonFiniteLossError, ProgressiveSchedule, WarmStart,
                            check_finite_losses, check_training_memory, crop_batch, finite_checkpoint_note,
                            rng_of_all_ranks, rng_preserved, same_weights_everywhere, set_own_rng, stage_message)

from ..experiment import newest_usable

OPTIMIZERS = {'Adam': torch.optim.Adam, 'AdamW': torch.optim.AdamW}


class NonFiniteOutputError(RunError, RuntimeError):
    """The network's output for an image has NaN or inf values (damaged weights): nothing of it is written."""


@MODEL_REGISTRY.register()
class RAMiTModel(SRModel):
    """SRModel for RAMiT: reference-protocol validation plus warm start, AMP, AdamW, multi-loss, progressive."""

    def __init__(self, opt: dict):
        train_opt = opt.get('train') or {}
        self.warm_start_iter = int(train_opt.get('warm_start_iter') or 0) if opt['is_train'] else 0
        # A resumed run's pretrain_network_g is its own full checkpoint (set by basicsr's check_resume).
        self.warm_loading = self.warm_start_iter > 0 and not opt['path'].get('resume_state')
        self.lq_path: Optional[str] = None
        self._saved_rng: Optional[list] = None
        self._pending_rng: Optional[list] = None
        super().__init__(opt)

    # ----------------------------------------------------------------------------------------- loading / devices
    def print_network(self, net: nn.Module) -> None:
        """One line: what the network is and its parameter count; the whole module tree with
        ``logger: print_network: true``."""
        bare = self.get_bare_model(net)
        params = sum(p.numel() for p in bare.parameters())
        describe = bare.describe() if hasattr(bare, 'describe') else type(bare).__name__
        logger = get_root_logger()
        logger.info(f'Network: {describe}, {params:,d} parameters ({type(net).__name__})')
        if (self.opt.get('logger') or {}).get('print_network'):
            logger.info(str(bare))

    def load_network(self, net: nn.Module, load_path: str, strict: bool = True, param_key: Optional[str] = 'params'
                     ) -> None:
        """Load on the CPU with weights_only (no CUDA mapping), raw or BasicSR checkpoints, one-line errors; a warm
        start leaves to_target.* out."""
        logger = get_root_logger()
        exclude = (WARM_START_TRAINED,) if self.warm_loading else ()
        bare = self.get_bare_model(net)
        sd, _, entry = read_checkpoint(load_path, param_key)
        skipped = [] if strict else [p for p in mismatched_keys(bare.state_dict(), sd) if not p.startswith(exclude)]
        load_weights(bare, sd, exclude, strict, label=load_path)
        note = f'; warm start: {", ".join(exclude)}* kept at initialisation' if exclude else ''
        logger.info(f'Loading {type(bare).__name__} from {load_path} (weights: {entry or "the whole file"}{note}).')
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
        """EMA, losses, AMP, clipping, progressive schedule, warm start, compile, optimizers and schedulers."""
        self.net_g.train()
        train_opt = self.opt['train']
        logger = get_root_logger()
        self.ema_decay = train_opt.get('ema_decay', 0)
        if self.ema_decay > 0:
            logger.info(f'Use Exponential Moving Average with decay: {self.ema_decay}')
            # Only used for validation and saving, so it is never wrapped in DDP.
            self.net_g_ema = build_network(self.opt['network_g']).to(self.device)
            self.model_ema(0)
            if not self.warm_loading and self.opt['path'].get('pretrain_network_g'):
                self.load_network(self.net_g_ema, self.opt['path']['pretrain_network_g'],
                                  self.opt['path'].get('strict_load_g', True), 'params_ema')
            self.net_g_ema.eval()

        self.losses = OrderedDict((name, loss.to(self.device)) for name, loss in build_losses(train_opt).items())
        self.grad_clip = float(train_opt.get('grad_clip') or 0)
        self.amp_dtype = amp_dtype(train_opt.get('amp'), 'train:amp')
        # The scaler keeps float16 gradients from underflowing; bfloat16 has float32's range and needs none.
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        self.progressive = None
        if train_opt.get('progressive'):
            data_opt = self.opt['datasets']['train']
            self.progressive = ProgressiveSchedule.from_options(
                train_opt['progressive'], data_opt['gt_size'], data_opt['batch_size_per_gpu'],
                self.opt.get('scale', 1), 'train:progressive',
                ('datasets:train:gt_size', 'datasets:train:batch_size_per_gpu'))
        self._stage: Optional[int] = None
        self.warm_start = WarmStart(self.get_bare_model(self.net_g), self.warm_start_iter, self.opt['dist'],
                                    logger.info)
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

    def get_optimizer(self, optim_type: str, params, lr: float, **kwargs) -> torch.optim.Optimizer:
        """Adam or AdamW (basicsr 1.4.2 knows only Adam)."""
        if optim_type not in OPTIMIZERS:
            raise OptionError(f"train:optim_g:type {optim_type!r} is not supported; valid: {', '.join(OPTIMIZERS)}")
        return OPTIMIZERS[optim_type](params, lr, **kwargs)

    # ------------------------------------------------------------------------------------------------ training
    def feed_data(self, data: dict) -> None:
        """SRModel's, remembering the input's file for messages."""
        super().feed_data(data)
        paths = data.get('lq_path')
        self.lq_path = paths[0] if isinstance(paths, (list, tuple)) and paths else paths

    def optimize_parameters(self, current_iter: int) -> None:
        """One step: warm-start phase, progressive crop, (autocast) forward, losses, finite check, step, EMA."""
        if self._pending_rng is not None:
            self._restore_rng(current_iter)
        self.warm_start.update(current_iter)
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
        try:
            check_finite_losses(loss_dict, current_iter, '', self.opt['dist'])
        except NonFiniteLossError as err:  # only now is the experiment folder read (not at every iteration)
            raise NonFiniteLossError(f'{err}{self._last_checkpoint_note(current_iter, output)}') from None

        if self.scaler is not None:
            self.scaler.scale(l_total).backward()
        else:
            l_total.backward()
        self.warm_start.drop_frozen_grads()
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

    def check_memory(self) -> None:
        """OptionError before any batch is loaded when the most demanding training step (the delivered batch, or the
        progressive stage with the most pixels) cannot fit the memory at hand."""
        data_opt = self.opt['datasets']['train']
        scale = self.opt.get('scale', 1)
        if not data_opt.get('gt_size'):
            return  # whole images: their size is not known before they are read
        steps = [(data_opt['batch_size_per_gpu'], data_opt['gt_size'] // scale)]
        if self.progressive is not None:
            steps = [(b, g // scale) for g, b in zip(self.progressive.gt_sizes, self.progressive.batch_sizes)]
        batch, lq_size = max(steps, key=lambda step: step[0] * step[1] ** 2)
        check_training_memory(self.get_bare_model(self.net_g), batch, lq_size, self.device,
                              'datasets:train:batch_size_per_gpu')

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

    def _last_checkpoint_note(self, current_iter: int, output: torch.Tensor) -> str:
        """Where the last usable checkpoint is, for the message that stops a diverged run. A non-finite output comes
        from the weights of the previous iteration: a checkpoint saved of them is damaged, even with finite values."""
        models, states = self.opt['path']['models'], self.opt['path']['training_states']
        damaged = not torch.isfinite(output).all()
        found = newest_usable(models, states, before=current_iter - 1 if damaged else None)
        hint = 'resume with --auto_resume'
        if found is not None and damaged and newest_usable(models, states) != found:  # --auto_resume takes that one
            hint = f'resume from it with --force_yml path:resume_state={found[1]}'
        return finite_checkpoint_note(found and (found[0], osp.join(models, f'net_g_{found[0]}.pth')), hint)

    def _restore_rng(self, current_iter: int) -> None:
        """Put every generator back where the run being resumed had it after its last saved iteration."""
        states, self._pending_rng = self._pending_rng, None
        if not set_own_rng(states):
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
        with rng_preserved(cuda=True):
            super().validation(dataloader, current_iter, tb_logger, save_img)

    # ------------------------------------------------------------------------------------------------- saving
    def save(self, epoch: int, current_iter: int) -> None:
        """SRModel's save, with every process's random state gathered first and, in a distributed run, the weights
        checked to be the same on every process (collectives)."""
        self._saved_rng = rng_of_all_ranks()
        processes = same_weights_everywhere(self.get_bare_model(self.net_g), f'iteration {current_iter}')
        if processes > 1:
            get_root_logger().info(f'weights identical on all {processes} processes')
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
        save_dict[DESCRIPTION_KEY] = network_description(self.get_bare_model(nets[0]))
        label = 'latest' if current_iter == -1 else current_iter
        stem = osp.join(self.opt['path']['models'], f'{net_label}_{label}')
        save_torch(save_dict, f'{stem}.pth')
        if (self.opt.get('logger') or {}).get('save_safetensors'):
            write_safetensors(f'{stem}.safetensors', select_state_dict(save_dict), save_dict[DESCRIPTION_KEY])

    @master_only
    def save_training_state(self, epoch: int, current_iter: int) -> None:
        """Save optimizer/scheduler (and fp16 GradScaler) state, the seed and the random state, atomically."""
        if current_iter == -1:
            return
        state = {'epoch': epoch, 'iter': current_iter, 'optimizers': [o.state_dict() for o in self.optimizers],
                 'schedulers': [s.state_dict() for s in self.schedulers], 'manual_seed': self.opt.get('manual_seed'),
                 'random_state': self._saved_rng}
        if self.scaler is not None:
            state['scaler'] = self.scaler.state_dict()
        save_torch(state, osp.join(self.opt['path']['training_states'], f'{current_iter}.state'))

    def resume_training(self, resume_state: dict) -> None:
        """Restore optimizers, schedulers and the fp16 GradScaler; the random state at the next iteration."""
        super().resume_training(resume_state)
        if self.scaler is not None and 'scaler' in resume_state:
            self.scaler.load_state_dict(resume_state['scaler'])
        self._pending_rng = resume_state.get('random_state')


def build_losses(train_opt: dict) -> 'OrderedDict[str, nn.Module]':
    """Every ``train.<name>_opt`` mapping is a weighted loss from LOSS_REGISTRY, logged as l_<name> (l_pix)."""
    losses = OrderedDict()
    for key, spec in train_opt.items():
        if not key.endswith('_opt') or not spec:
            continue
        name = 'l_pix' if key == 'pixel_opt' else f'l_{key[:-len("_opt")]}'
        losses[name] = build_loss(dict(spec))
    if not losses:
        raise OptionError('train: no loss configured; add e.g. pixel_opt: {type: L1Loss, loss_weight: 1.0}')
    return losses
