"""optax_greedy: learning-rate controllers that react to training itself."""

from optax_greedy._greedy_lr import GreedyLRState
from optax_greedy._greedy_lr import greedy_adam
from optax_greedy._greedy_lr import greedy_adamw
from optax_greedy._greedy_lr import greedy_lr
from optax_greedy._greedy_lr import greedy_sgd

__version__ = "0.1.0"
