"""The defaults a run falls back to and the bounds every spec checks: plain numbers, light
enough for the commands' option declarations (`lrbench --help` imports no pydantic or torch)."""

# The one home of the defaults a run falls back to, in a config and in `lrbench run`, `lr-find`
# and `bench` alike (a config's run id hashes the values, so changing one changes ids).
DEFAULT_MOMENTUM = 0.9
DEFAULT_WEIGHT_DECAY = 0.0
DEFAULT_BATCH_SIZE = 128

# Sizes past any real use that would overflow, or never end, deep inside a run.
SEEDS_BELOW = 2**31  # what 32-bit seeding (numpy's legacy RNG, many tools) takes
MAX_EPOCHS = 100_000
MAX_BATCH = 2**20
MAX_IMAGES = 2**31 - 1
