# RAMiT x3 super-resolution with mmengine's Runner:  ramit mm-train options/mmengine_RAMiT_SRx3.py
# The paper's recipe as options/train_RAMiT_SRx3.yml states it, in iterations (an epoch is 1,000 iterations at a total
# batch of 64): warm start from the x2 model, whose every weight but to_target.* (the scale-specific reconstruction)
# is loaded; only to_target.* trains for the first 50 epochs (the other weights stay bit-identical), then all.
# 300 epochs, warm-up 10 epochs, lr halved at epochs 50, 100, 150, 175, 200, 225.
# Everything else (model, DIV2K LMDBs with LR patch 64, Set5 with crop border = scale, Adam, hooks) comes from the
# x2 config; mmengine_RAMiT_SRx4.py inherits this file.
_base_ = 'mmengine_RAMiT_SRx2.py'

model = dict(
    generator=dict(upscale=3),
    # The x2 model: this path is where mmengine_RAMiT_SRx2.py's run leaves it; the published RAMiT_X2.pth loads too.
    pretrained='work_dirs/mmengine_RAMiT_SRx2/iter_500000.pth',
    pretrained_exclude=('to_target.',))
train_dataloader = dict(dataset=dict(data_prefix=dict(lq='DIV2K_train_LR_bicubic_X3_sub.lmdb'), scale=3))
val_dataloader = dict(dataset=dict(data_prefix=dict(lq='LR_bicubic/X3'), lq_tmpl='{}x3', scale=3))
test_dataloader = val_dataloader

# Iterations 1..50,000 train only to_target.*.
custom_hooks = [dict(type='WeightsOnlyCheckpointHook'), dict(type='WarmStartHook', iters=50_000),
                dict(type='RandomStateHook')]

train_cfg = dict(max_iters=300_000)
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 10_000, by_epoch=False, begin=0, end=10_000),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=300_000,
         milestones=[50_000, 100_000, 150_000, 175_000, 200_000, 225_000], gamma=0.5),
]
