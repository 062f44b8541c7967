"""What every chapter shares: config knobs, device and seeds, data, hooks, runner, attribution."""
