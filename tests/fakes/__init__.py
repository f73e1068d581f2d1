"""Fakes of the external services TrainBot talks to, shared by the tests."""
