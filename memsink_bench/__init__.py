"""memsink-bench: a benchmark for localizing and removing memorized training text.

Pipeline: corpus -> setting -> checkpoint (train or load) -> method (localize / edit)
-> metrics -> result record -> leaderboard tables and plots.
"""

__version__ = "0.1.0"
