"""Loading the shop's settings from a JSON file."""

import json
import os

DEFAULT_PATH = os.path.join(os.path.dirname(__file__), "settings.json")


def load_config(path):
    with open(path) as f:
