"""Numbers that the portable kernels and a backend's native ones share."""

import math

GELU_C = math.sqrt(2.0 / math.pi)  # GELU's tanh approximation: tanh(C * (x + K * x**3))
GELU_K = 0.044715
