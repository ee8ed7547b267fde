"""One command that reproduces the GPU results, step by step, within budgets.

    python -m mre_jax.reproduce --outdir=OUT \\
        [--steps=bench,teacher_fer,teacher_raf,e1,e4] [--data=../shared/data] \\
        [--workdirs=DIR] [--budget_s=SECONDS|STEP=SECONDS,...] \\
        [--epochs=N|STEP=N,...] [--inputs=DIR] [--install_wheels=DIR] [--tiny]

Steps, always in this order: ``bench`` (speed of the four models, JAX beside
PyTorch eager and torch.compile); ``teacher_fer`` and ``teacher_raf`` (the
teacher, paper recipe, on FER2013 / RAF-DB: its evaluation and the train
split's logits, both views, float16); ``e1`` and ``e4`` (students A and B of
Table IV on FER2013, distilled from ``teacher_fer``'s logits).

Each step runs in processes of its own (:mod:`mre_jax.reproduce.steps`)
within its time budget: training stops at an epoch boundary once the next
epoch would eat into the time kept for evaluation and logits, and whatever
outlives the budget is killed. Results land in ``OUTDIR/<step>/`` as soon as
they exist, and ``OUTDIR/manifest.json`` records per step the command,
start, end, wall time, status (``done``; ``cut_off`` by its budget;
``failed``, with the error line), device and commit. A failed step does not
stop the steps that do not need it. Students read
``<inputs>/teacher_fer/teacher_logits.npz``, so each step can run alone on a
fresh machine from earlier outputs. ``--tiny`` (or
``MRE_JAX_REPRODUCE_TINY=1``) shrinks every step to run on a CPU.
"""
