"""What a seed trains: the knobs (knobs.py), the built-in protocols and their phases (protocol.py), the
named presets (presets.py), a user's changes to them — --set, --protocol FILE, --model — (overrides.py)
and a user's own training function as a recipe (function.py)."""
