"""nasmt: multi-task neural architecture search with Ray Tune, Optuna and Plotly."""

__version__ = "0.1.0"
