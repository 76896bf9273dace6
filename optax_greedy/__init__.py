"""optax_greedy: learning-rate controllers that react to training itself."""

from optax_greedy import nmf
from optax_greedy import policy
from optax_greedy._budget import DEFAULT_ENVELOPE
from optax_greedy._budget import Envelope
from optax_greedy._budget import NO_ENVELOPE
from optax_greedy._budget import budget_schedule
from optax_greedy._checkpoint import abstract_opt_state
from optax_greedy._checkpoint import check_state_compatible
from optax_greedy._checkpoint import restore_opt_state
from optax_greedy._greedy_lr import GreedyLRState
from optax_greedy._greedy_aliases import greedy_adam
from optax_greedy._greedy_aliases import greedy_adamw
from optax_greedy._greedy_aliases import greedy_sgd
from optax_greedy._greedy_lr import greedy_lr
from optax_greedy._validation_feed import validation_feed
from optax_greedy._hypergradient import HypergradientState
from optax_greedy._hd_aliases import hd_adam
from optax_greedy._hd_aliases import hd_sgd
from optax_greedy._hypergradient import hypergradient
from optax_greedy._learned import LearnedScheduleState
from optax_greedy._learned import learned_schedule
from optax_greedy._multihost import checked_value
from optax_greedy._learned_scale import LearnedScaleState
from optax_greedy._learned_scale import learned_scale
from optax_greedy._probe import RateProbeState
from optax_greedy._probe import rate_probe
from optax_greedy.policy import load_policy
from optax_greedy._rate import get_learning_rate
from optax_greedy._stability import StabilityClipState
from optax_greedy._stability import stability_clip

__version__ = "0.2.0"
