# RAMiT x4 super-resolution with mmengine's Runner:  ramit mm-train options/mmengine_RAMiT_SRx4.py
# The x3 recipe (options/train_RAMiT_SRx4.yml): warm start from the x2 model with a 50,000-iteration head-only phase,
# 300,000 iterations; only the scale and its data differ from mmengine_RAMiT_SRx3.py.
_base_ = 'mmengine_RAMiT_SRx3.py'

model = dict(generator=dict(upscale=4))
train_dataloader = dict(dataset=dict(data_prefix=dict(lq='DIV2K_train_LR_bicubic_X4_sub.lmdb'), scale=4))
val_dataloader = dict(dataset=dict(data_prefix=dict(lq='LR_bicubic/X4'), lq_tmpl='{}x4', scale=4))
test_dataloader = val_dataloader
