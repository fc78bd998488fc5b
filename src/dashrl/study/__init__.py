"""`dashrl study`: the paper's five findings, measured with their uncertainty, by one command.

- `presets`: what every arm shares (`PRESETS`: cpu, paper) and the `--quick` shrink;
- `arms`: the arms (`ARMS`) and their run folders (skip finished, resume interrupted);
- `measure`: the one evaluator (accuracy in and out of distribution, length, pass@k) and
  SFT-M's traces;
- `findings`, `tables`: pure functions from numbers to effects, intervals, verdicts and tables;
- `figures`, `report`: the PNGs and `report.md`;
- `command`: the CLI (`dashrl study --help`).

Only the standard library is imported here and in `presets`, `arms`, `findings`, `tables`.
"""
