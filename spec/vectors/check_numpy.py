#!/usr/bin/env python3
"""Reads every valid typed array of payloads.json the way wire.md §11.4 tells a Python peer to:
numpy.frombuffer(payload, dtype, offset=data_offset).reshape(dims), and checks the values.

Needs numpy (scripts/test.sh installs it into a venv). Run: `python3 spec/vectors/check_numpy.py`.
"""
import json
import os
import sys

import numpy

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "payloads.json")
doc = json.load(open(path))
checked = 0
for v in doc["typed_arrays"]["valid"]:
    payload = bytes.fromhex(v["hex"])
    arr = numpy.frombuffer(payload, dtype=v["numpy_dtype"], offset=v["data_offset"])
    arr = arr.reshape(v["dims"]) if v["dims"] else arr.reshape(())
    want = numpy.array(v["values"], dtype=v["numpy_dtype"]).reshape(arr.shape)
    if not numpy.array_equal(arr, want):
        sys.exit(f"{v['name']}: numpy read {arr!r}, expected {want!r}")
    checked += 1
print(f"numpy {numpy.__version__} read {checked} typed arrays from payloads.json as specified")
