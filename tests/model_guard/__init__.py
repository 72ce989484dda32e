"""Stand-ins for the real models' packages, for the subprocesses of tests that did not ask
for a real model: tests/conftest.py puts this folder first on those tests' PYTHONPATH, so
a command line or server they start that reaches for a model fails, naming the fixture."""
