"""Sources of readings (SSH, subprocess, the demo fleet) and the FleetMonitor that folds them."""
