"""The seven emotion classes, in FER2013's label order.

Every dataset is remapped to this order (RAF-DB's 1..7 included), and every
model's outputs follow it. Kept apart from the datasets package so that
inference needs no dataset code.
"""

CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise",
               "neutral")
NUM_CLASSES = len(CLASS_NAMES)
