"""What the Beam jobs share: runner configuration, the order work is handed out, live progress."""
