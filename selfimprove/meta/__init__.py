"""Meta-learning: the strategy bandit, the gain-prediction model, insights."""
