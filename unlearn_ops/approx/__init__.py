"""Approximate unlearning: methods that edit a trained model instead of retraining it."""
