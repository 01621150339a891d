"""nasgen inside a search loop: regularized evolution on conditional draws, and the Optuna integration.

``nasgen.search.evolution`` needs numpy alone; ``nasgen.search.optuna`` needs the
``optuna`` extra (``pip install "nasgen[optuna]"``) and is imported only when asked for,
so ``import nasgen`` never imports Optuna.
"""
