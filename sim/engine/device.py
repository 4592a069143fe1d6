"""The FPGA the engine is synthesized for: light enough for the command line's argument parser."""
from __future__ import annotations

DEVICE = {"device": "LFE5U-85F", "package": "CABGA756", "speed": 6}
SPEED_GRADES = (6, 7, 8)  # the LFE5U-85F's; 6, the slowest and the common one on boards, is the target
