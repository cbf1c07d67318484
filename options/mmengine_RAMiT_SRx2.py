# RAMiT x2 super-resolution with mmengine's Runner:  ramit mm-train options/mmengine_RAMiT_SRx2.py
# Test a checkpoint (the authors' raw .pth, or one this config saved) on Set5:
#   ramit mm-test options/mmengine_RAMiT_SRx2.py --checkpoint RAMiT_X2.pth
# The paper's recipe as options/train_RAMiT_SRx2.yml states it, in iterations: 500 epochs of 1,000 iterations at
# total batch 64, 20 warm-up epochs, lr halved at epochs 200, 300, 400, 425, 450, 475. Other variants: change
# model.generator.variant ('RAMiT', 'RAMiT-1', 'RAMiT-slimSR').
# Every other mmengine_RAMiT_*.py config inherits this one (`_base_`) and states only what its task changes.

# The Runner builds every type below from ramit_plugin's registries (which fall back to mmengine's classes).
default_scope = 'ramit_plugin'
custom_imports = dict(imports=['ramit_plugin'], allow_failed_imports=False)

model = dict(
    type='RAMiTRestorer',
    generator=dict(type='RAMiT', variant='RAMiT', task='sr', upscale=2),
    pixel_loss=dict(type='L1Loss', loss_weight=1.0, reduction='mean'),
    # Stacks the batch on the device; RAMiT normalises its input itself with the published statistics.
    data_preprocessor=dict(type='RAMiTDataPreprocessor'),
    # Weights to start from, in any form (authors' raw .pth, BasicSR, mmengine); mmengine_RAMiT_SRx3.py shows the
    # x3/x4 warm start from an x2 model (pretrained_exclude=('to_target.',) plus WarmStartHook).
    pretrained=None)

# DIV2K sub-images packed into LMDB as BasicSR's dataset-preparation docs lay them out
# (`ramit extract-subimages`, then `ramit make-lmdb`); for image folders use io_backend='disk' and the folders.
train_pipeline = [
    dict(type='PairedRandomCrop', lq_patch_size=64),  # the paper's LR patch at every scale (the dataset's scale)
    dict(type='PairedFlipRotate', hflip=True, rotation=True),
    dict(type='PackRestorationInputs'),
]
test_pipeline = [dict(type='PackRestorationInputs')]

train_dataloader = dict(
    batch_size=32,  # per GPU: the paper used 2 GPUs, total 64
    num_workers=4,
    persistent_workers=True,
    # mmengine's InfiniteSampler with a seed per sample for its crop and flips: a resumed run repeats them exactly.
    sampler=dict(type='SeededInfiniteSampler', shuffle=True),
    dataset=dict(
        type='PairedRestorationDataset',
        data_root='datasets/DIV2K',
        data_prefix=dict(gt='DIV2K_train_HR_sub.lmdb', lq='DIV2K_train_LR_bicubic_X2_sub.lmdb'),
        io_backend='lmdb',
        scale=2,
        pipeline=train_pipeline))

# Set5 with BasicSR/EDSR names: HR/baby.png, LR_bicubic/X2/babyx2.png. Batch 1: images differ in size.
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='PairedRestorationDataset',
        data_root='datasets/Set5',
        data_prefix=dict(gt='HR', lq='LR_bicubic/X2'),  # relative to data_root, so --cfg-options can swap the set
        lq_tmpl='{}x2',  # BasicSR/EDSR names: LR_bicubic/X2/babyx2.png <-> HR/baby.png
        scale=2,
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader

# PSNR/SSIM on the Y channel with crop border = scale, on uint8 outputs (the paper's protocol).
val_evaluator = dict(type='PSNRSSIMMetric', crop_border='scale', test_y_channel=True)
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=500_000, val_interval=5_000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# Adam, no weight decay, lr 4e-4 for a total batch of 64; auto_scale_lr scales it linearly to
# (GPUs x batch_size) when `--cfg-options auto_scale_lr.enable=True` (mmengine's usual switch).
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=4e-4, betas=(0.9, 0.999), weight_decay=0))
auto_scale_lr = dict(enable=False, base_batch_size=64)

# Linear warm-up over 20 epochs (20k iterations, starting near 0 like BasicSR's warmup_iter), then halvings.
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 20_000, by_epoch=False, begin=0, end=20_000),
    # An explicit end: a scheduler left to default to max_iters keeps the old value when a run is resumed with
    # a larger train_cfg.max_iters (mmengine restores it from the checkpoint).
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=500_000,
         milestones=[200_000, 300_000, 400_000, 425_000, 450_000, 475_000], gamma=0.5),
]

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5_000, max_keep_ckpts=5,
                    save_best='PSNR', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'))
# An EMA of the weights (the paper keeps none; BasicSR's train.ema_decay 0.999 is momentum 0.001 here) is mmengine's
# EMAHook:  --cfg-options default_hooks.ema.type=EMAHook default_hooks.ema.momentum=0.001
# Validation and test then run the EMA weights, and a saved checkpoint's 'state_dict' holds them (what `ramit mm-test
# --checkpoint` and model.pretrained load); the raw weights go to its 'ema_state_dict' for resuming.
# Makes the saved checkpoints loadable by torch.load's weights_only default (resume on torch >= 2.6); saves and
# restores the random state, so that `--resume` continues exactly as the run would have gone on.
custom_hooks = [dict(type='WeightsOnlyCheckpointHook'), dict(type='RandomStateHook')]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # `ramit mm-train` switches to gloo on machines without CUDA.
    dist_cfg=dict(backend='nccl'))
log_processor = dict(type='LogProcessor', window_size=100, by_epoch=False)
visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
log_level = 'INFO'
randomness = dict(seed=0)
load_from = None
resume = False
