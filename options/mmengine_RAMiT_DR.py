# RAMiT deraining (Rain13K) with mmengine's Runner:  ramit mm-train options/mmengine_RAMiT_DR.py
# Test on Rain100H:  ramit mm-test options/mmengine_RAMiT_DR.py --checkpoint W.pth
#   (Test100 or another set with input/ and target/ folders:  --cfg-options test_dataloader.dataset.data_root=DIR;
#   the original Rain100H names rain-001.png <-> norain-001.png:  test_dataloader.dataset.pairing=rain100h)
# The denoising recipe (options/train_RAMiT_DR.yml) on the paired layout of mmengine_RAMiT_LLE.py; PSNR/SSIM on the
# Y channel (BT.601) without border crop, the paper's deraining protocol.
_base_ = 'mmengine_RAMiT_LLE.py'

model = dict(generator=dict(task='dr'))
# Rain13K as Restormer/MPRNet distribute it: input/ (rainy) and target/ (clean), same file names.
train_dataloader = dict(dataset=dict(data_root='datasets/Rain13K', data_prefix=dict(lq='input', gt='target'),
                                     pairing='same'))
val_dataloader = dict(dataset=dict(data_root='datasets/Rain100H', data_prefix=dict(lq='input', gt='target')))
test_dataloader = val_dataloader
val_evaluator = dict(test_y_channel=True)
test_evaluator = val_evaluator
