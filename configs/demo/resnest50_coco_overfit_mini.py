# The main job's (`make demo`) training config: our ResNeSt-50 256x192 recipe,
# unchanged, with its training set wrapped in MMPose's RepeatDataset.
#
# Why the wrapper: the demo trains on the 12 bundled people, all in one batch,
# so each epoch is one iteration, and mmcv 1.x's EpochBasedRunner sleeps 2 s at
# the start of every epoch ("Prevent possible deadlock during epoch
# transition", mmcv/runner/epoch_based_runner.py): 2 of every 3.3 s of a
# training iteration were that sleep. Repeating the 12 people `times` times per
# epoch (tools/run_demo.py sets `data.train.times` and `data.shuffle=False`,
# so every batch is still exactly the 12 people) pays the sleep once per
# `times` iterations. Everything else the demo changes is passed as
# --cfg-options on the stock tools and printed (resnest_plugin/hosts/mmpose0/demo/regime.py).
_base_ = ['../top_down/resnest/coco/resnest50_coco_256x192.py']

data = dict(
    train=dict(
        _delete_=True,
        type='RepeatDataset',
        times=10,
        dataset={{_base_.data.train}}))
