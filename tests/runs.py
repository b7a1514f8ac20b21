"""Settings for training runs in tests."""

# A few iterations of the small model on 64 px shapes: seconds, not minutes.
TINY_OVERRIDES = [
    "model.input.min_size_train=[64]",
    "model.input.max_size_train=96",
    "model.input.min_size_test=64",
    "model.input.max_size_test=96",
    "solver.batch_size=2",
    "solver.num_workers=0",
    "solver.warmup_iters=2",
    "solver.log_period=1",
]
