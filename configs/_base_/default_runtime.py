# Copied verbatim from MMPose 0.29.0 configs/_base_/default_runtime.py (Apache-2.0,
# https://github.com/open-mmlab/mmpose/blob/v0.29.0/configs/_base_/default_runtime.py)
# so this repository's configs are self-contained; tests/test_configs.py checks that
# the resolved configs stay field-for-field equal to MMPose's own.
# For CPU-only distributed runs pass --cfg-options dist_params.backend=gloo.

checkpoint_config = dict(interval=10)

log_config = dict(
    interval=50,
    hooks=[
        dict(type='TextLoggerHook'),
        # dict(type='TensorboardLoggerHook')
        # dict(type='PaviLoggerHook') # for internal services
    ])

log_level = 'INFO'
load_from = None
resume_from = None
dist_params = dict(backend='nccl')
workflow = [('train', 1)]

# disable opencv multithreading to avoid system being overloaded
opencv_num_threads = 0
# set multi-process start method as `fork` to speed up the training
mp_start_method = 'fork'
