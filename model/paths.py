"""Where the checkout lies, and the project's shared material beside it (`../shared`: datasets and
the official implementation's reference vectors), for the tools and tests that default to them."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATASETS = SHARED / "datasets"
SHARED_VECTORS = SHARED / "refvectors"
