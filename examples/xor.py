"""The tutorial's XOR network, on whatever backend PORTANET_BACKEND selects.

    python examples/xor.py
    PORTANET_BACKEND=torch python examples/xor.py
"""

import numpy as np

import portanet
from portanet import ActivationLayer, FCLayer, Network
from portanet.activations import tanh, tanh_prime
from portanet.losses import mse, mse_prime

portanet.set_seed(0)
print("backend:", portanet.get_backend())

# training data, in the tutorial's layout: (samples, 1, features)
x_train = np.array([[[0, 0]], [[0, 1]], [[1, 0]], [[1, 1]]])
y_train = np.array([[[0]], [[1]], [[1]], [[0]]])

net = Network()
net.add(FCLayer(2, 3))
net.add(ActivationLayer(tanh, tanh_prime))
net.add(FCLayer(3, 1))
net.add(ActivationLayer(tanh, tanh_prime))

net.use(mse, mse_prime)
net.fit(x_train, y_train, epochs=1000, learning_rate=0.1)

out = net.predict(x_train)
print(out)
worst = float(np.max(np.abs(out - y_train)))
print(f"largest distance to a target: {worst:.4f}", "(solved)" if worst < 0.1 else "(NOT solved)")
