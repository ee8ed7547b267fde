"""A run's workdir: checkpoints and loading a trained model from them
(``checkpointing``), their integrity check (``checkpoint_integrity``), the
lock that keeps two runs out of one workdir (``workdir_lock``), and the
config, commit and machine recorded beside them (``run_info``)."""
