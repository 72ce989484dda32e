"""Verified training data for a student model: tasks from code, teacher samples, the dataset."""
