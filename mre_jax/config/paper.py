"""The numbers published in Mini-ResEmoteNet (Murtada, Abdelrhman, Attia, 2025).

Their one source in the code: models, configs, the benchmarks and the results
report import them from here. Each constant cites its table.
"""

from __future__ import annotations

import types

# Table II: base width (first CNN stage), SE reduction and parameter count of
# each model. Student C's count implies an SE hidden width of 32 = 4w, i.e. a
# reduction of 1.
TABLE_II = types.MappingProxyType({
    "teacher": {"width": 64, "se_reduction": 16, "num_params": 80_238_599},
    "student_a": {"width": 32, "se_reduction": 16, "num_params": 20_069_383},
    "student_b": {"width": 16, "se_reduction": 16, "num_params": 5_022_215},
    "student_c": {"width": 8, "se_reduction": 1, "num_params": 1_259_911},
})

# Table IV: the distillation experiments, (student preset, T, alpha).
EXPERIMENTS = types.MappingProxyType({
    "E1": ("student_a", 3.0, 0.20),
    "E2": ("student_a", 3.0, 0.15),
    "E3": ("student_b", 3.0, 0.20),
    "E4": ("student_b", 3.0, 0.15),
    "E5": ("student_b", 3.0, 0.10),
    "E6": ("student_c", 3.0, 0.20),
})

# Table IV: test accuracy (%) per dataset, of the teacher and each experiment.
TEST_ACCURACY = types.MappingProxyType({
    "fer2013": {"teacher": 79.79, "E1": 76.42, "E2": 76.17, "E3": 68.75,
                "E4": 70.20, "E5": 69.56, "E6": 58.58},
    "raf_db": {"teacher": 94.76, "E1": 85.00, "E4": 82.45},
})

# Table V: model size (MB), inference memory (MB) and average inference time
# per image (ms, on the paper's Tesla P100) of the teacher, E1 and E4.
TABLE_V = types.MappingProxyType({
    "size_mb": {"teacher": 306.09, "E1": 76.56, "E4": 19.16},
    "memory_mb": {"fer2013": {"teacher": 10102.94, "E1": 5088.46,
                              "E4": 1814.97},
                  "raf_db": {"teacher": 838.19, "E1": 827.96, "E4": 748.72}},
    "inference_ms": {"fer2013": {"teacher": 1.4, "E1": 0.14, "E4": 0.15},
                     "raf_db": {"teacher": 3.2, "E1": 0.29, "E4": 0.24}},
})

