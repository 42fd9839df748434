"""Pilot: a real-mode regime in which participation matters (which devices, and how many).

The schedules, settings, cache and criteria live in ``edgeft.training.protocol`` (with the
calibration protocol that follows the pilot); this script runs the pilot's four schedules::

    OMP_NUM_THREADS=1 python benchmarks/participation_pilot.py --settings iid-h1 --seeds 0-4
    python benchmarks/participation_pilot.py --table --seeds 0-6     # from the cache
"""

from __future__ import annotations

from edgeft.training import protocol as _protocol

globals().update({k: v for k, v in vars(_protocol).items() if not k.startswith("__")})
main = _protocol.main

if __name__ == "__main__":
    raise SystemExit(main())
