# RAMiT gray denoising (blind Gaussian noise) with mmengine's Runner:  ramit mm-train options/mmengine_RAMiT_GDN.py
# Test on Set12 at sigma 25:  ramit mm-test options/mmengine_RAMiT_GDN.py --checkpoint W.pth
#   (BSD68, Urban100/HR:  --cfg-options test_dataloader.dataset.data_root=DIR; sigma: ...dataset.pipeline.0.sigma=15)
# The colour-denoising recipe (options/train_RAMiT_GDN.yml) on one channel: every image, colour or not, is converted
# with OpenCV's RGB2GRAY on uint8, as the paper's gray sets are.
_base_ = 'mmengine_RAMiT_CDN.py'

model = dict(generator=dict(task='graydn'))
train_dataloader = dict(dataset=dict(gray=True))
val_dataloader = dict(dataset=dict(data_root='datasets/Set12', gray=True))
test_dataloader = val_dataloader
