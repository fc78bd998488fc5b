import json, sys
import dashrl.bench.runs as runs
from dashrl.bench.trlprobe import TRLSetting
from pathlib import Path
runs.PROBE_STEPS = 2  # step 1 (TRL's first calls) and step 2, timed; rows as the TTR run's steps 1-2
flags = json.load(open("/work/main/docs/results/calculator/ttr/ttr.json"))["flags"]
out = Path("/work/calc_probe")
s = runs.trl_probe_seconds(flags, TRLSetting(int(sys.argv[1])), out)
print(json.dumps({"batch": int(sys.argv[1]), "step2_s": s, "flags": flags}))
