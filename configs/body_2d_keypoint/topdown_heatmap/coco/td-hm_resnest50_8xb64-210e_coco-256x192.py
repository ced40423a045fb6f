# ResNeSt-50 SimpleBaseline top-down heatmap model, COCO, input 256x192 (HxW),
# for MMPose 1.x.
#
# Field-for-field the recipe of MMPose 1.3.2's own config
# configs/body_2d_keypoint/topdown_heatmap/coco/td-hm_resnest50_8xb64-210e_coco-256x192.py
# (the one behind the model-zoo checkpoint), except:
# - the backbone is resnest_plugin's implementation, `resnest_plugin.ResNeSt`,
#   registered through `custom_imports` (resnest_plugin.hosts.mmpose1);
# - `_base_` is our copy of MMPose 1.3.2's default_runtime.py
#   (configs/body_2d_keypoint/_base_/), not `mmpose::_base_/...`, whose
#   lookup in mmengine 0.10.7 needs pkg_resources.
# tests/mmpose1/test_configs.py compares the two resolved configs key
# by key. This is a config for the MMPose 1.x stack (mmpose 1.3.2, mmengine
# 0.10.7, mmcv 2.1.0); the MMPose 0.x configs are in configs/top_down/.
#
# Offline (no access to download.openmmlab.com) pass
#   --cfg-options model.backbone.init_cfg=None
# to train from scratch instead of from the mmcls ImageNet weights.
_base_ = ['../../_base_/default_runtime.py']

# Registers `resnest_plugin.ResNeSt` in MMPose 1.x's model registry; on the
# MMPose 0.x stack it stops with a one-line error naming the stack this
# config needs.
custom_imports = dict(
    imports=['resnest_plugin.hosts.mmpose1'], allow_failed_imports=False)

# runtime
train_cfg = dict(max_epochs=210, val_interval=10)

# optimizer
optim_wrapper = dict(optimizer=dict(
    type='Adam',
    lr=5e-4,
))

# learning policy
param_scheduler = [
    dict(
        type='LinearLR', begin=0, end=500, start_factor=0.001,
        by_epoch=False),  # warm-up
    dict(
        type='MultiStepLR',
        begin=0,
        end=210,
        milestones=[170, 200],
        gamma=0.1,
        by_epoch=True)
]

# automatically scaling LR based on the actual training batch size
auto_scale_lr = dict(base_batch_size=512)

# hooks
default_hooks = dict(checkpoint=dict(save_best='coco/AP', rule='greater'))

# codec settings
codec = dict(
    type='MSRAHeatmap', input_size=(192, 256), heatmap_size=(48, 64), sigma=2)

# model settings
model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(
        type='PoseDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        type='resnest_plugin.ResNeSt',
        depth=50,
        init_cfg=dict(type='Pretrained', checkpoint='mmcls://resnest50'),
    ),
    head=dict(
        type='HeatmapHead',
        in_channels=2048,
        out_channels=17,
        loss=dict(type='KeypointMSELoss', use_target_weight=True),
        decoder=codec),
    test_cfg=dict(
        flip_test=True,
        flip_mode='heatmap',
        shift_heatmap=True,
    ))

# base dataset settings
# MMPose's CocoDataset (same samples, order and evaluation) whose errors also name
# a corrupt annotation or detections JSON (resnest_plugin/hosts/mmpose1/datasets.py).
dataset_type = 'resnest_plugin.CheckedCocoDataset'
data_mode = 'topdown'
data_root = 'data/coco/'

# pipelines
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs')
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='PackPoseInputs')
]

# data loaders
train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_mode=data_mode,
        ann_file='annotations/person_keypoints_train2017.json',
        data_prefix=dict(img='train2017/'),
        pipeline=train_pipeline,
    ))
val_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_mode=data_mode,
        ann_file='annotations/person_keypoints_val2017.json',
        bbox_file='data/coco/person_detection_results/'
        'COCO_val2017_detections_AP_H_56_person.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=val_pipeline,
    ))
test_dataloader = val_dataloader

# evaluators
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/person_keypoints_val2017.json')
test_evaluator = val_evaluator
